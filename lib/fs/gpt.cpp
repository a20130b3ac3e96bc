// Writes GUID partition tables (protective or hybrid MBR, primary and backup GPT) and reads them.
#include "fs/gpt.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <span>
#include <system_error>

#include <fmt/format.h>
#include <sys/random.h>
#include <zlib.h>

#include "base/error.h"
#include "util/bytes.h"
#include "util/digest.h"
#include "util/fd.h"

namespace edgeforge::fs {
namespace {

constexpr std::uint64_t k_sector = k_gpt_sector_size;
constexpr std::uint64_t k_alignment_sectors = k_gpt_partition_alignment / k_sector;
constexpr std::size_t k_header_size = 92;
constexpr std::string_view k_gpt_signature = "EFI PART";
constexpr std::uint32_t k_gpt_revision = 0x00010000; // UEFI 2.x: revision 1.0
constexpr std::size_t k_entry_array_bytes = k_gpt_entry_count * k_gpt_entry_size;
constexpr std::size_t k_primary_sectors = 2 + k_gpt_entry_array_sectors;
constexpr std::size_t k_backup_sectors = k_gpt_entry_array_sectors + 1;
// The smallest disk with both tables and one usable sector between them.
constexpr std::uint64_t k_min_disk_sectors = k_primary_sectors + k_backup_sectors + 1;
constexpr std::uint8_t k_mbr_type_protective = 0xee;
constexpr std::size_t k_mbr_entries_offset = 446;
constexpr std::size_t k_max_hybrid_partitions = 3; // the fourth MBR entry is the 0xEE one
constexpr std::uint64_t k_max_mbr_sectors = 0xffffffff;

void put_u16(std::uint8_t* out, std::uint16_t value) {
    out[0] = static_cast<std::uint8_t>(value);
    out[1] = static_cast<std::uint8_t>(value >> 8);
}

void put_u32(std::uint8_t* out, std::uint32_t value) {
    for (int i = 0; i < 4; ++i) {
        out[i] = static_cast<std::uint8_t>(value >> (8 * i));
    }
}

void put_u64(std::uint8_t* out, std::uint64_t value) {
    for (int i = 0; i < 8; ++i) {
        out[i] = static_cast<std::uint8_t>(value >> (8 * i));
    }
}

std::uint16_t get_u16(std::span<const std::uint8_t> b, std::size_t at) {
    return static_cast<std::uint16_t>(b[at] | b[at + 1] << 8);
}

std::uint32_t get_u32(std::span<const std::uint8_t> b, std::size_t at) {
    return static_cast<std::uint32_t>(b[at]) | static_cast<std::uint32_t>(b[at + 1]) << 8 |
           static_cast<std::uint32_t>(b[at + 2]) << 16 |
           static_cast<std::uint32_t>(b[at + 3]) << 24;
}

std::uint64_t get_u64(std::span<const std::uint8_t> b, std::size_t at) {
    return static_cast<std::uint64_t>(get_u32(b, at)) |
           static_cast<std::uint64_t>(get_u32(b, at + 4)) << 32;
}

// The GPT's "mixed-endian" GUID: the first three fields little-endian, the rest as written.
// Byte i on disk is byte k_guid_order[i] of the GUID's text order.
constexpr std::array<std::size_t, 16> k_guid_order = {3, 2, 1,  0,  5,  4,  7,  6,
                                                      8, 9, 10, 11, 12, 13, 14, 15};

void put_guid(std::uint8_t* out, const Guid& guid) {
    for (std::size_t i = 0; i < k_guid_order.size(); ++i) {
        out[i] = guid.bytes[k_guid_order[i]];
    }
}

Guid get_guid(std::span<const std::uint8_t> in) {
    Guid guid;
    for (std::size_t i = 0; i < k_guid_order.size(); ++i) {
        guid.bytes[k_guid_order[i]] = in[i];
    }
    return guid;
}

// The CRC32 of GPT headers and entry arrays (zlib's, as the UEFI specification asks).
std::uint32_t crc32_of(const std::uint8_t* data, std::size_t size) {
    return static_cast<std::uint32_t>(::crc32(0L, data, static_cast<uInt>(size)));
}

// The partition's name for messages; entries without a name by their number.
std::string display_name(const GptPartition& partition, std::size_t index) {
    return partition.name.empty() ? fmt::format("#{}", index + 1) : partition.name;
}

// UTF-8 to UTF-16 code units; nullopt for bytes that are not UTF-8.
std::optional<std::u16string> utf8_to_utf16(std::string_view text) {
    std::u16string out;
    for (std::size_t i = 0; i < text.size();) {
        const auto lead = static_cast<unsigned char>(text[i]);
        std::size_t length = 0;
        char32_t code = 0;
        if (lead < 0x80) {
            length = 1;
            code = lead;
        } else if ((lead & 0xe0) == 0xc0) {
            length = 2;
            code = lead & 0x1fU;
        } else if ((lead & 0xf0) == 0xe0) {
            length = 3;
            code = lead & 0x0fU;
        } else if ((lead & 0xf8) == 0xf0) {
            length = 4;
            code = lead & 0x07U;
        } else {
            return std::nullopt;
        }
        if (i + length > text.size()) {
            return std::nullopt;
        }
        for (std::size_t k = 1; k < length; ++k) {
            const auto next = static_cast<unsigned char>(text[i + k]);
            if ((next & 0xc0) != 0x80) {
                return std::nullopt;
            }
            code = (code << 6) | (next & 0x3fU);
        }
        // Overlong forms, surrogates and values past U+10FFFF are not UTF-8.
        static constexpr std::array<char32_t, 5> k_min_code = {0, 0, 0x80, 0x800, 0x10000};
        if (code < k_min_code[length] || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) {
            return std::nullopt;
        }
        if (code >= 0x10000) {
            code -= 0x10000;
            out.push_back(static_cast<char16_t>(0xd800 + (code >> 10)));
            out.push_back(static_cast<char16_t>(0xdc00 + (code & 0x3ff)));
        } else {
            out.push_back(static_cast<char16_t>(code));
        }
        i += length;
    }
    return out;
}

// A GPT name: UTF-16LE, NUL-terminated, 36 code units, as UTF-8.
std::string utf16_name(std::span<const std::uint8_t> b) {
    std::string out;
    for (std::size_t i = 0; i + 1 < b.size(); i += 2) {
        std::uint32_t unit = get_u16(b, i);
        if (unit == 0) {
            break;
        }
        if (unit >= 0xD800 && unit <= 0xDBFF && i + 3 < b.size()) {
            const std::uint32_t low = get_u16(b, i + 2);
            if (low >= 0xDC00 && low <= 0xDFFF) {
                unit = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                i += 2;
            }
        }
        if (unit < 0x80) {
            out += static_cast<char>(unit);
        } else if (unit < 0x800) {
            out += static_cast<char>(0xC0 | unit >> 6);
            out += static_cast<char>(0x80 | (unit & 0x3F));
        } else if (unit < 0x10000) {
            out += static_cast<char>(0xE0 | unit >> 12);
            out += static_cast<char>(0x80 | (unit >> 6 & 0x3F));
            out += static_cast<char>(0x80 | (unit & 0x3F));
        } else {
            out += static_cast<char>(0xF0 | unit >> 18);
            out += static_cast<char>(0x80 | (unit >> 12 & 0x3F));
            out += static_cast<char>(0x80 | (unit >> 6 & 0x3F));
            out += static_cast<char>(0x80 | (unit & 0x3F));
        }
    }
    return out;
}

// The GUID of a GPT entry or header as upper-case text, as sgdisk prints it.
std::string guid_text(std::span<const std::uint8_t> b) {
    std::string text = get_guid(b).str();
    for (auto& c : text) {
        c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    }
    return text;
}

using util::bytes_at;

// Cylinder/head/sector of a sector for MBR entries, with the 255 heads x 63 sectors geometry
// every partitioner assumes; sectors past what CHS can address get `beyond`.
std::array<std::uint8_t, 3> chs_of(std::uint64_t lba, std::array<std::uint8_t, 3> beyond) {
    constexpr std::uint64_t k_heads = 255;
    constexpr std::uint64_t k_sectors_per_track = 63;
    const std::uint64_t cylinder = lba / (k_heads * k_sectors_per_track);
    if (cylinder > 1023) {
        return beyond;
    }
    const std::uint64_t head = (lba / k_sectors_per_track) % k_heads;
    const std::uint64_t sector = lba % k_sectors_per_track + 1;
    return {static_cast<std::uint8_t>(head),
            static_cast<std::uint8_t>(sector | ((cylinder >> 2) & 0xc0)),
            static_cast<std::uint8_t>(cylinder & 0xff)};
}

void put_mbr_entry(std::uint8_t* mbr, std::size_t slot, bool active, std::uint8_t type,
                   std::uint64_t first_lba, std::uint64_t sectors,
                   std::array<std::uint8_t, 3> beyond_chs) {
    std::uint8_t* entry = mbr + k_mbr_entries_offset + 16 * slot;
    entry[0] = active ? 0x80 : 0x00;
    const auto start = chs_of(first_lba, beyond_chs);
    std::copy(start.begin(), start.end(), entry + 1);
    entry[4] = type;
    const auto end = chs_of(first_lba + sectors - 1, beyond_chs);
    std::copy(end.begin(), end.end(), entry + 5);
    put_u32(entry + 8, static_cast<std::uint32_t>(first_lba));
    put_u32(entry + 12, static_cast<std::uint32_t>(std::min(sectors, k_max_mbr_sectors)));
}

struct CheckedPartition {
    const GptPartition* partition = nullptr;
    std::string display;
    std::u16string name;
    std::uint64_t last_lba = 0;
};

std::vector<CheckedPartition> check_layout(const GptLayout& layout) {
    if (layout.disk_size % k_sector != 0) {
        throw bad_input("the disk size {} bytes is not a whole number of 512-byte sectors",
                        layout.disk_size);
    }
    if (layout.disk_size / k_sector < k_min_disk_sectors) {
        throw bad_input("a disk of {} bytes is too small for a GUID partition table: the two "
                        "tables alone take {} bytes",
                        layout.disk_size, (k_min_disk_sectors - 1) * k_sector);
    }
    if (layout.partitions.size() > k_gpt_entry_count) {
        throw bad_input("{} partitions given; a GUID partition table holds at most {}",
                        layout.partitions.size(), k_gpt_entry_count);
    }
    if (layout.boot_code.size() > k_mbr_boot_code_size) {
        throw bad_input("the MBR boot code is {} bytes; at most {} fit before the disk signature "
                        "(give the first {} bytes of GRUB's boot.img)",
                        layout.boot_code.size(), k_mbr_boot_code_size, k_mbr_boot_code_size);
    }
    if (layout.disk_guid.is_zero()) {
        throw bad_input("the disk GUID is zero; give a random or seeded GUID");
    }

    const std::uint64_t last_usable = gpt_last_usable_lba(layout.disk_size);
    std::vector<CheckedPartition> checked;
    std::size_t hybrid = 0;
    for (std::size_t i = 0; i < layout.partitions.size(); ++i) {
        const GptPartition& partition = layout.partitions[i];
        CheckedPartition entry;
        entry.partition = &partition;
        entry.display = display_name(partition, i);
        const std::string& name = entry.display;

        auto utf16 = utf8_to_utf16(partition.name);
        if (!utf16) {
            throw bad_input("partition name '{}' is not valid UTF-8", partition.name);
        }
        if (utf16->size() > k_gpt_name_units) {
            throw bad_input("partition name '{}' is {} UTF-16 code units long; a GPT partition "
                            "name holds at most {}",
                            partition.name, utf16->size(), k_gpt_name_units);
        }
        entry.name = std::move(*utf16);
        if (partition.type.is_zero()) {
            throw bad_input("partition {} has the zero type GUID, which marks unused entries; "
                            "give its type",
                            name);
        }
        if (partition.unique.is_zero()) {
            throw bad_input("partition {} has the zero unique GUID; give a random or seeded GUID",
                            name);
        }
        if (partition.size == 0 || partition.size % k_sector != 0) {
            throw bad_input("partition {} is {} bytes; a partition is a whole, non-zero number "
                            "of 512-byte sectors",
                            name, partition.size);
        }
        if (partition.first_lba % k_alignment_sectors != 0) {
            throw bad_input("partition {} starts at sector {}, not on a 1 MiB boundary (a "
                            "multiple of {} sectors)",
                            name, partition.first_lba, k_alignment_sectors);
        }
        entry.last_lba = partition.first_lba + partition.size / k_sector - 1;
        if (partition.first_lba < k_gpt_first_usable_lba || entry.last_lba > last_usable ||
            entry.last_lba < partition.first_lba) {
            throw bad_input("partition {} (sectors {}-{}) does not fit the usable sectors {}-{} "
                            "of a disk of {} bytes; make the disk bigger or the partition "
                            "smaller",
                            name, partition.first_lba, entry.last_lba, k_gpt_first_usable_lba,
                            last_usable, layout.disk_size);
        }
        for (const auto& earlier : checked) {
            const GptPartition& other = *earlier.partition;
            if (partition.first_lba <= earlier.last_lba && other.first_lba <= entry.last_lba) {
                throw bad_input("partition {} overlaps {}: sectors {}-{} and {}-{}", name,
                                earlier.display, partition.first_lba, entry.last_lba,
                                other.first_lba, earlier.last_lba);
            }
            if (partition.unique == other.unique) {
                throw bad_input("partitions {} and {} have the same unique GUID {}",
                                earlier.display, name, partition.unique.str());
            }
        }
        if (partition.unique == layout.disk_guid) {
            throw bad_input("partition {} has the disk's GUID {} as its unique GUID", name,
                            partition.unique.str());
        }
        if (partition.hybrid_mbr_type) {
            ++hybrid;
            const std::uint8_t type = *partition.hybrid_mbr_type;
            if (type == 0x00 || type == k_mbr_type_protective) {
                throw bad_input("partition {} cannot be listed in the hybrid MBR with type "
                                "0x{:02x}; give the type of its filesystem (0x0c FAT32, 0x83 "
                                "Linux, 0xef EFI system)",
                                name, type);
            }
            if (entry.last_lba > k_max_mbr_sectors) {
                throw bad_input("partition {} ends past 2 TiB, which an MBR cannot address; it "
                                "cannot be in the hybrid MBR",
                                name);
            }
        }
        checked.push_back(std::move(entry));
    }
    if (hybrid > k_max_hybrid_partitions) {
        throw bad_input("{} partitions are marked for the hybrid MBR; it holds at most {} next to "
                        "its 0xEE entry",
                        hybrid, k_max_hybrid_partitions);
    }
    return checked;
}

void build_mbr(std::uint8_t* mbr, const GptLayout& layout,
               const std::vector<CheckedPartition>& partitions) {
    std::copy(layout.boot_code.begin(), layout.boot_code.end(), mbr);
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    const std::uint64_t disk_sectors = layout.disk_size / k_sector;

    std::vector<const CheckedPartition*> hybrid;
    for (const auto& partition : partitions) {
        if (partition.partition->hybrid_mbr_type) {
            hybrid.push_back(&partition);
        }
    }
    if (hybrid.empty()) {
        // The UEFI specification's protective MBR: one 0xEE entry over the whole disk (or as
        // much as 32 bits address), ending CHS 0xFFFFFF when the end is out of CHS reach.
        put_mbr_entry(mbr, 0, false, k_mbr_type_protective, 1, disk_sectors - 1,
                      {0xff, 0xff, 0xff});
        return;
    }
    // A hybrid MBR, laid out as gdisk does with "0xEE first": the 0xEE entry covers the primary
    // GPT up to the first mirrored partition, which keeps GPT-aware tools treating the disk as
    // GPT; the mirrored partitions follow in GPT order.
    std::uint64_t first_mirrored = disk_sectors;
    for (const auto* partition : hybrid) {
        first_mirrored = std::min(first_mirrored, partition->partition->first_lba);
    }
    put_mbr_entry(mbr, 0, false, k_mbr_type_protective, 1, first_mirrored - 1, {0xfe, 0xff, 0xff});
    for (std::size_t i = 0; i < hybrid.size(); ++i) {
        const GptPartition& partition = *hybrid[i]->partition;
        const bool active = (partition.attributes & k_gpt_attribute_legacy_bios_bootable) != 0;
        put_mbr_entry(mbr, i + 1, active, *partition.hybrid_mbr_type, partition.first_lba,
                      partition.size / k_sector, {0xfe, 0xff, 0xff});
    }
}

void build_entries(std::uint8_t* entries, const std::vector<CheckedPartition>& partitions) {
    for (std::size_t i = 0; i < partitions.size(); ++i) {
        const GptPartition& partition = *partitions[i].partition;
        std::uint8_t* entry = entries + i * k_gpt_entry_size;
        put_guid(entry, partition.type);
        put_guid(entry + 16, partition.unique);
        put_u64(entry + 32, partition.first_lba);
        put_u64(entry + 40, partitions[i].last_lba);
        put_u64(entry + 48, partition.attributes);
        for (std::size_t k = 0; k < partitions[i].name.size(); ++k) {
            put_u16(entry + 56 + 2 * k, static_cast<std::uint16_t>(partitions[i].name[k]));
        }
    }
}

void build_header(std::uint8_t* header, const GptLayout& layout, std::uint64_t my_lba,
                  std::uint64_t alternate_lba, std::uint64_t entries_lba,
                  std::uint32_t entries_crc) {
    std::memcpy(header, k_gpt_signature.data(), k_gpt_signature.size());
    put_u32(header + 8, k_gpt_revision);
    put_u32(header + 12, static_cast<std::uint32_t>(k_header_size));
    // header + 16: the header's CRC32, computed last over the header with this field zero.
    put_u64(header + 24, my_lba);
    put_u64(header + 32, alternate_lba);
    put_u64(header + 40, k_gpt_first_usable_lba);
    put_u64(header + 48, gpt_last_usable_lba(layout.disk_size));
    put_guid(header + 56, layout.disk_guid);
    put_u64(header + 72, entries_lba);
    put_u32(header + 80, static_cast<std::uint32_t>(k_gpt_entry_count));
    put_u32(header + 84, static_cast<std::uint32_t>(k_gpt_entry_size));
    put_u32(header + 88, entries_crc);
    put_u32(header + 16, crc32_of(header, k_header_size));
}

} // namespace

bool Guid::is_zero() const {
    return std::all_of(bytes.begin(), bytes.end(), [](std::uint8_t b) { return b == 0; });
}

std::string Guid::str() const {
    std::string hex = util::to_hex(bytes.data(), bytes.size());
    for (const std::size_t dash : {8U, 13U, 18U, 23U}) {
        hex.insert(dash, 1, '-');
    }
    return hex;
}

std::optional<Guid> parse_guid(std::string_view text) {
    try {
        return guid_literal(text);
    } catch (const std::invalid_argument&) {
        return std::nullopt;
    }
}

Guid guid_from_seed(std::string_view seed) {
    util::Sha256 hash;
    hash.update(seed);
    const auto digest = hash.finish();
    Guid guid;
    std::copy_n(digest.begin(), guid.bytes.size(), guid.bytes.begin());
    // RFC 4122 section 4.4: version 4 in the high nibble of time_hi, variant 10 in clock_seq.
    guid.bytes[6] = static_cast<std::uint8_t>((guid.bytes[6] & 0x0f) | 0x40);
    guid.bytes[8] = static_cast<std::uint8_t>((guid.bytes[8] & 0x3f) | 0x80);
    return guid;
}

Guid random_guid() {
    Guid guid;
    std::size_t filled = 0;
    while (filled < guid.bytes.size()) {
        const ssize_t got = ::getrandom(guid.bytes.data() + filled, guid.bytes.size() - filled, 0);
        if (got < 0) {
            if (errno == EINTR) {
                continue;
            }
            throw std::system_error(errno, std::generic_category(), "getrandom");
        }
        filled += static_cast<std::size_t>(got);
    }
    guid.bytes[6] = static_cast<std::uint8_t>((guid.bytes[6] & 0x0f) | 0x40);
    guid.bytes[8] = static_cast<std::uint8_t>((guid.bytes[8] & 0x3f) | 0x80);
    return guid;
}

GptTables make_gpt_tables(const GptLayout& layout) {
    const auto partitions = check_layout(layout);
    const std::uint64_t disk_sectors = layout.disk_size / k_sector;
    const std::uint64_t backup_header_lba = disk_sectors - 1;
    const std::uint64_t backup_entries_lba = backup_header_lba - k_gpt_entry_array_sectors;

    GptTables tables;
    tables.primary.assign(k_primary_sectors * k_sector, 0);
    tables.backup.assign(k_backup_sectors * k_sector, 0);
    tables.backup_offset = backup_entries_lba * k_sector;

    std::uint8_t* entries = tables.primary.data() + 2 * k_sector;
    build_entries(entries, partitions);
    const std::uint32_t entries_crc = crc32_of(entries, k_entry_array_bytes);
    std::copy_n(entries, k_entry_array_bytes, tables.backup.data());

    build_mbr(tables.primary.data(), layout, partitions);
    build_header(tables.primary.data() + k_sector, layout, 1, backup_header_lba, 2, entries_crc);
    build_header(tables.backup.data() + k_gpt_entry_array_sectors * k_sector, layout,
                 backup_header_lba, 1, backup_entries_lba, entries_crc);
    return tables;
}

void write_gpt(int fd, const GptLayout& layout) {
    const GptTables tables = make_gpt_tables(layout);
    util::pwrite_exact(fd, tables.primary.data(), tables.primary.size(), 0);
    util::pwrite_exact(fd, tables.backup.data(), tables.backup.size(), tables.backup_offset);
}

std::string gpt_type_name(std::string_view guid, std::string& code) {
    if (const auto parsed = parse_guid(guid)) {
        for (const auto& known : k_gpt_partition_types) {
            if (known.guid == *parsed) {
                code = std::string(known.code);
                return std::string(known.name);
            }
        }
    }
    code.clear();
    return "";
}

PartitionTable read_partition_table(
    const std::function<std::vector<std::uint8_t>(std::uint64_t, std::size_t)>& read) {
    PartitionTable table;
    const std::vector<std::uint8_t> mbr = read(0, 1024);
    if (mbr.size() < 512 || mbr[510] != 0x55 || mbr[511] != 0xAA) {
        if (mbr.size() >= 520 && bytes_at(mbr, 512, k_gpt_signature)) {
            table.problem = "GPT header without an MBR boot signature";
        } else {
            return table;
        }
    }
    std::vector<PartitionEntry> mbr_entries;
    bool protective = false;
    for (std::uint32_t i = 0; i < 4 && mbr.size() >= 512; ++i) {
        const std::span<const std::uint8_t> entry(mbr.data() + k_mbr_entries_offset + 16 * i, 16);
        if (entry[4] == 0) {
            continue;
        }
        if (entry[4] == k_mbr_type_protective) {
            protective = true;
            continue;
        }
        PartitionEntry part;
        part.number = i + 1;
        part.mbr_type = entry[4];
        part.bootable = entry[0] == 0x80;
        part.start = static_cast<std::uint64_t>(get_u32(entry, 8)) * k_sector;
        part.size = static_cast<std::uint64_t>(get_u32(entry, 12)) * k_sector;
        mbr_entries.push_back(part);
    }
    if (mbr.size() >= 604 && bytes_at(mbr, 512, k_gpt_signature)) {
        // What was read of LBA 1: a disk shorter than 1024 bytes has less than a whole sector.
        const std::span<const std::uint8_t> header(mbr.data() + 512,
                                                   std::min<std::size_t>(mbr.size() - 512, 512));
        const std::uint32_t header_size = get_u32(header, 12);
        table.type = "gpt";
        table.hybrid_mbr = !mbr_entries.empty();
        if (header_size < k_header_size || header_size > 512) {
            table.problem = "the GPT header size is outside 92 to 512 bytes";
            return table;
        }
        if (header_size > header.size()) {
            table.problem = "the GPT header lies past the end of the disk";
            return table;
        }
        std::vector<std::uint8_t> copy(header.begin(), header.begin() + header_size);
        std::fill(copy.begin() + 16, copy.begin() + 20, std::uint8_t{0});
        if (crc32_of(copy.data(), copy.size()) != get_u32(header, 16)) {
            table.problem = "GPT header CRC mismatch";
        }
        const std::uint64_t entries_lba = get_u64(header, 72);
        const std::uint32_t count = get_u32(header, 80);
        const std::uint32_t entry_size = get_u32(header, 84);
        if (entry_size < 128 || count > 1024 || entry_size > 4096) {
            table.problem = "the GPT partition entry array is invalid (entries of 128 to 4096 "
                            "bytes, at most 1024 of them)";
            return table;
        }
        const std::size_t array_size = static_cast<std::size_t>(count) * entry_size;
        const std::vector<std::uint8_t> array = read(entries_lba * k_sector, array_size);
        if (array.size() < array_size) {
            table.problem = "the GPT entry array lies past the end of the disk";
            return table;
        }
        if (crc32_of(array.data(), array.size()) != get_u32(header, 88) && table.problem.empty()) {
            table.problem = "GPT entry array CRC mismatch";
        }
        for (std::uint32_t i = 0; i < count; ++i) {
            const std::span<const std::uint8_t> entry(array.data() + std::size_t{i} * entry_size,
                                                      entry_size);
            if (std::all_of(entry.begin(), entry.begin() + 16,
                            [](std::uint8_t b) { return b == 0; })) {
                continue;
            }
            PartitionEntry part;
            part.number = i + 1;
            part.gpt_type = guid_text(entry.subspan(0, 16));
            const std::uint64_t first = get_u64(entry, 32);
            const std::uint64_t last = get_u64(entry, 40);
            part.start = first * k_sector;
            part.size = last >= first ? (last - first + 1) * k_sector : 0;
            part.name = utf16_name(entry.subspan(56, 72));
            table.partitions.push_back(part);
        }
        return table;
    }
    if (protective) {
        table.type = "gpt";
        table.problem = "protective MBR without a GPT header at LBA 1";
        return table;
    }
    if (!mbr_entries.empty()) {
        table.type = "mbr";
        table.partitions = mbr_entries;
    }
    return table;
}

} // namespace edgeforge::fs

// PE/COFF header reading, section appending and checksum (see pe.h).
#include "secureboot/pe.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>

#include <fcntl.h>
#include <sys/stat.h>

#include "base/error.h"
#include "util/bytes.h"
#include "util/fd.h"

namespace edgeforge::secureboot {

namespace {

constexpr std::size_t k_section_entry_size = 40;
constexpr std::uint32_t k_readonly_data = 0x40000040; // CNT_INITIALIZED_DATA | MEM_READ

std::uint64_t align_up(std::uint64_t value, std::uint32_t alignment) {
    return (value + alignment - 1) / alignment * alignment;
}

bool power_of_two(std::uint32_t value) {
    return value != 0 && (value & (value - 1)) == 0;
}

} // namespace

PeLayout parse_pe(std::string_view image, std::string_view what) {
    const auto bytes = util::byte_span(image);
    if (image.size() > k_max_pe_image_size) {
        throw bad_input("{}: {} bytes is larger than a PE image edgeforge reads ({} bytes)", what,
                        image.size(), k_max_pe_image_size);
    }
    if (image.size() < 0x40 || !util::bytes_at(bytes, 0, "MZ")) {
        throw bad_input("{}: not a PE image (no MZ header)", what);
    }
    const std::size_t pe = util::le32(bytes, 0x3c);
    if (pe > image.size() || image.size() - pe < 24 || !util::bytes_at(bytes, pe, {"PE\0\0", 4})) {
        throw bad_input("{}: not a PE image (no PE signature at offset {})", what, pe);
    }
    PeLayout layout;
    layout.coff_offset = pe + 4;
    layout.machine = util::le16(bytes, layout.coff_offset);
    const std::uint16_t count = util::le16(bytes, layout.coff_offset + 2);
    const std::uint16_t optional_size = util::le16(bytes, layout.coff_offset + 16);
    const std::size_t optional = layout.coff_offset + 20;
    if (count > k_max_pe_sections) {
        throw bad_input("{}: {} sections (at most {} are read)", what, count, k_max_pe_sections);
    }
    if (optional_size < 96 || image.size() - optional < optional_size) {
        throw bad_input("{}: optional header of {} bytes does not fit the image", what,
                        optional_size);
    }
    const std::uint16_t magic = util::le16(bytes, optional);
    std::size_t directories_count_offset = 0;
    if (magic == 0x20b) {
        directories_count_offset = optional + 108;
    } else if (magic == 0x10b) {
        directories_count_offset = optional + 92;
    } else {
        throw bad_input("{}: optional header magic {:#x} is neither PE32 nor PE32+", what, magic);
    }
    const std::size_t directories = directories_count_offset + 4;
    // PE32+ puts NumberOfRvaAndSizes 16 bytes further than the 96 bytes checked above.
    if (directories > optional + optional_size) {
        throw bad_input("{}: the optional header ({} bytes) ends before its data directories",
                        what, optional_size);
    }
    const std::uint32_t directory_count = util::le32(bytes, directories_count_offset);
    if (directory_count < 5 || directories + 5 * 8 > optional + optional_size) {
        throw bad_input("{}: the optional header has no certificate table directory", what);
    }
    layout.section_alignment = util::le32(bytes, optional + 32);
    layout.file_alignment = util::le32(bytes, optional + 36);
    layout.size_of_image_offset = optional + 56;
    layout.size_of_headers = util::le32(bytes, optional + 60);
    layout.checksum_offset = optional + 64;
    layout.certificate_directory_offset = directories + 4 * 8;
    layout.certificate_table_pointer = util::le32(bytes, layout.certificate_directory_offset);
    layout.certificate_table_size = util::le32(bytes, layout.certificate_directory_offset + 4);
    if (!power_of_two(layout.section_alignment) || !power_of_two(layout.file_alignment) ||
        layout.file_alignment > layout.section_alignment) {
        throw bad_input("{}: section alignment {:#x} / file alignment {:#x} are not valid", what,
                        layout.section_alignment, layout.file_alignment);
    }
    layout.section_table_offset = optional + optional_size;
    const std::size_t table_end = layout.section_table_offset + count * k_section_entry_size;
    if (layout.size_of_headers > image.size() || table_end > layout.size_of_headers) {
        throw bad_input("{}: the section table ends at {} past the headers' {} bytes", what,
                        table_end, layout.size_of_headers);
    }
    if (layout.certificate_table_size != 0 &&
        (layout.certificate_table_pointer > image.size() ||
         image.size() - layout.certificate_table_pointer < layout.certificate_table_size)) {
        throw bad_input("{}: the certificate table ({} bytes at {}) lies outside the image", what,
                        layout.certificate_table_size, layout.certificate_table_pointer);
    }
    for (std::size_t i = 0; i < count; ++i) {
        const std::size_t at = layout.section_table_offset + i * k_section_entry_size;
        PeSection section;
        const std::string_view name(image.data() + at, 8);
        section.name = std::string(name.substr(0, std::min<std::size_t>(name.find('\0'), 8)));
        section.virtual_size = util::le32(bytes, at + 8);
        section.virtual_address = util::le32(bytes, at + 12);
        section.raw_size = util::le32(bytes, at + 16);
        section.raw_pointer = util::le32(bytes, at + 20);
        section.characteristics = util::le32(bytes, at + 36);
        if (section.raw_size != 0 && (section.raw_pointer > image.size() ||
                                      image.size() - section.raw_pointer < section.raw_size)) {
            throw bad_input("{}: section {} ({} bytes at {}) lies outside the image", what,
                            section.name, section.raw_size, section.raw_pointer);
        }
        layout.sections.push_back(std::move(section));
    }
    return layout;
}

void PeChecksum::add(std::uint64_t offset, std::string_view bytes) {
    const auto* data = reinterpret_cast<const unsigned char*>(bytes.data());
    std::uint64_t sum = 0;
    for (std::size_t i = 0; i < bytes.size(); ++i) {
        const std::uint64_t at = offset + i;
        if (at >= checksum_offset_ && at < checksum_offset_ + 4) {
            continue;
        }
        // Little-endian words: a byte at an odd offset is the high half of its word.
        sum += static_cast<std::uint64_t>(data[i]) << ((at & 1) * 8);
    }
    // End-around carry: sums of 16-bit words are equal modulo 0xffff however they are grouped.
    sum_ += sum;
    sum_ = (sum_ & 0xffffffffULL) + (sum_ >> 32);
}

std::uint32_t PeChecksum::finish(std::uint64_t file_size) const {
    std::uint64_t sum = sum_;
    while ((sum >> 16) != 0) {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    return static_cast<std::uint32_t>(sum + file_size);
}

std::uint32_t pe_checksum(std::string_view image, std::size_t checksum_offset) {
    PeChecksum checksum(checksum_offset);
    checksum.add(0, image);
    return checksum.finish(image.size());
}

PeImage assemble_pe_sections(std::string_view stub, const std::vector<PeAppendedSection>& sections,
                             std::string_view what) {
    const PeLayout layout = parse_pe(stub, what);
    const std::size_t new_count = layout.sections.size() + sections.size();
    const std::size_t table_end = layout.section_table_offset + new_count * k_section_entry_size;
    std::uint64_t data_end = layout.size_of_headers;
    std::uint64_t virtual_end = 0;
    std::uint32_t first_raw = layout.size_of_headers;
    for (const auto& section : layout.sections) {
        if (section.raw_size != 0) {
            data_end = std::max<std::uint64_t>(data_end, section.raw_pointer + section.raw_size);
            first_raw = std::min(first_raw, section.raw_pointer);
        }
        virtual_end = std::max<std::uint64_t>(virtual_end,
                                              std::uint64_t{section.virtual_address} +
                                                  std::max(section.virtual_size, section.raw_size));
    }
    if (new_count > k_max_pe_sections || table_end > first_raw) {
        throw bad_input("{}: its headers have no room for {} more section entries (the section "
                        "table would end at {}, the first section starts at {}); use a systemd "
                        "EFI stub built for UKIs",
                        what, sections.size(), table_end, first_raw);
    }
    std::vector<std::uint64_t> sizes;
    std::uint64_t total = align_up(data_end, layout.file_alignment);
    for (const auto& section : sections) {
        if (section.name.empty() || section.name.size() > 8) {
            throw bad_input("{}: section name \"{}\" must be 1 to 8 characters", what,
                            section.name);
        }
        std::uint64_t size = section.content.size();
        if (!section.file.empty()) {
            std::error_code ec;
            size = std::filesystem::file_size(section.file, ec);
            if (ec) {
                throw bad_input("{}: cannot read section {} from {}: {}", what, section.name,
                                section.file.string(), ec.message());
            }
        }
        sizes.push_back(size);
        total += align_up(size, layout.file_alignment);
    }
    if (total > k_max_pe_image_size || virtual_end + total > 0xffffffffULL) {
        throw bad_input("{}: the UKI would be {} bytes, more than a PE image can hold here ({})",
                        what, total, k_max_pe_image_size);
    }
    PeImage image;
    image.layout_ = layout;
    std::string& head = image.head_;
    head.assign(stub.substr(0, static_cast<std::size_t>(data_end)));
    head.resize(static_cast<std::size_t>(align_up(data_end, layout.file_alignment)), '\0');
    std::uint64_t offset = head.size();
    std::uint64_t address = align_up(virtual_end, layout.section_alignment);
    std::size_t entry = layout.section_table_offset + layout.sections.size() * k_section_entry_size;
    for (std::size_t i = 0; i < sections.size(); ++i) {
        const auto& section = sections[i];
        const auto size = static_cast<std::uint32_t>(sizes[i]);
        const auto raw_size = static_cast<std::uint32_t>(align_up(size, layout.file_alignment));
        std::memset(head.data() + entry, 0, k_section_entry_size);
        std::memcpy(head.data() + entry, section.name.data(), section.name.size());
        util::store_le32(head, entry + 8, size);
        util::store_le32(head, entry + 12, static_cast<std::uint32_t>(address));
        util::store_le32(head, entry + 16, raw_size);
        util::store_le32(head, entry + 20, static_cast<std::uint32_t>(offset));
        util::store_le32(head, entry + 36, k_readonly_data);
        image.layout_.sections.push_back(
            PeSection{section.name, size, static_cast<std::uint32_t>(address), raw_size,
                      static_cast<std::uint32_t>(offset), k_readonly_data});
        image.pieces_.push_back(
            PeImage::Piece{offset, size, raw_size, section.content, section.file});
        offset += raw_size;
        address = align_up(address + std::max<std::uint32_t>(size, 1), layout.section_alignment);
        entry += k_section_entry_size;
    }
    image.size_ = offset;
    util::store_le16(head, layout.coff_offset + 2, static_cast<std::uint16_t>(new_count));
    util::store_le32(head, layout.size_of_image_offset, static_cast<std::uint32_t>(address));
    util::store_le32(head, layout.certificate_directory_offset, 0);
    util::store_le32(head, layout.certificate_directory_offset + 4, 0);
    image.layout_.certificate_table_pointer = 0;
    image.layout_.certificate_table_size = 0;
    // The checksum is left zero: it covers every byte, so it is computed where the bytes are
    // read anyway (append_pe_sections(), sign_pe_to_file()).
    return image;
}

void PeImage::read(std::uint64_t offset, std::uint64_t length,
                   const std::function<void(std::string_view)>& sink) const {
    if (offset > size_ || size_ - offset < length) {
        throw std::out_of_range("PeImage::read past the image");
    }
    constexpr std::size_t k_chunk = 1 << 20;
    const std::uint64_t end = offset + length;
    // The header part.
    if (offset < head_.size()) {
        const std::uint64_t stop = std::min<std::uint64_t>(end, head_.size());
        for (std::uint64_t at = offset; at < stop; at += k_chunk) {
            sink(std::string_view(head_).substr(
                static_cast<std::size_t>(at),
                static_cast<std::size_t>(std::min<std::uint64_t>(k_chunk, stop - at))));
        }
        offset = stop;
    }
    static const std::string zeros(k_chunk, '\0');
    std::string buffer;
    for (const auto& piece : pieces_) {
        if (offset >= end) {
            break;
        }
        if (offset >= piece.offset + piece.padded) {
            continue;
        }
        // Content, from memory or from the file.
        if (offset < piece.offset + piece.size) {
            const std::uint64_t from = offset - piece.offset;
            const std::uint64_t stop = std::min<std::uint64_t>(end - piece.offset, piece.size);
            if (piece.file.empty()) {
                for (std::uint64_t at = from; at < stop; at += k_chunk) {
                    sink(piece.bytes.substr(
                        static_cast<std::size_t>(at),
                        static_cast<std::size_t>(std::min<std::uint64_t>(k_chunk, stop - at))));
                }
            } else {
                util::FileDescriptor fd(::open(piece.file.c_str(), O_RDONLY | O_CLOEXEC));
                struct stat st {};
                if (!fd.valid() || ::fstat(fd.get(), &st) != 0) {
                    throw build_failed("cannot read {} for the UKI: {}", piece.file.string(),
                                       std::strerror(errno));
                }
                if (static_cast<std::uint64_t>(st.st_size) != piece.size) {
                    throw build_failed("{} changed while the UKI was built from it; build again",
                                       piece.file.string());
                }
                buffer.resize(k_chunk);
                for (std::uint64_t at = from; at < stop;) {
                    const std::size_t want =
                        static_cast<std::size_t>(std::min<std::uint64_t>(k_chunk, stop - at));
                    bool whole = false;
                    try {
                        whole = util::pread_exact(fd.get(), buffer.data(), want, at);
                    } catch (const std::system_error& e) {
                        throw build_failed("cannot read {} for the UKI: {}", piece.file.string(),
                                           e.code().message());
                    }
                    if (!whole) {
                        throw build_failed("{} ended early while the UKI was built from it; "
                                           "build again",
                                           piece.file.string());
                    }
                    sink(std::string_view(buffer.data(), want));
                    at += want;
                }
            }
            offset = piece.offset + stop;
        }
        // The padding after it.
        const std::uint64_t stop = std::min<std::uint64_t>(end, piece.offset + piece.padded);
        while (offset < stop) {
            const std::size_t n =
                static_cast<std::size_t>(std::min<std::uint64_t>(k_chunk, stop - offset));
            sink(std::string_view(zeros.data(), n));
            offset += n;
        }
    }
}

std::string append_pe_sections(std::string_view stub,
                               const std::vector<PeAppendedSection>& sections,
                               std::string_view what) {
    const PeImage image = assemble_pe_sections(stub, sections, what);
    std::string out;
    out.reserve(static_cast<std::size_t>(image.size()));
    image.read(0, image.size(), [&](std::string_view bytes) { out.append(bytes); });
    util::store_le32(out, image.layout().checksum_offset,
                     pe_checksum(out, image.layout().checksum_offset));
    return out;
}

} // namespace edgeforge::secureboot

// PE/COFF images as UEFI loads them: the header fields a UKI builder and an Authenticode signer
// need, appending sections to an EFI stub, and the PE checksum. Headers are held in memory;
// appended sections may stay in their files (PeImage), so a UKI carrying a whole OS is never
// held in memory.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace edgeforge::secureboot {

inline constexpr std::size_t k_max_pe_image_size = std::size_t{2} << 30; // 2 GiB
inline constexpr std::uint16_t k_max_pe_sections = 96;

struct PeSection {
    std::string name; // up to 8 characters, NULs stripped
    std::uint32_t virtual_size = 0;
    std::uint32_t virtual_address = 0;
    std::uint32_t raw_size = 0;
    std::uint32_t raw_pointer = 0;
    std::uint32_t characteristics = 0;
};

// Where the fields are: offsets into the image, and the values read.
struct PeLayout {
    std::uint16_t machine = 0; // 0x8664 x86-64, 0xaa64 arm64, ...
    std::size_t coff_offset = 0;
    std::size_t checksum_offset = 0;
    std::size_t size_of_image_offset = 0;
    std::size_t certificate_directory_offset = 0; // data directory entry 4 (8 bytes)
    std::size_t section_table_offset = 0;
    std::uint32_t section_alignment = 0;
    std::uint32_t file_alignment = 0;
    std::uint32_t size_of_headers = 0;
    std::uint32_t certificate_table_pointer = 0; // 0: unsigned
    std::uint32_t certificate_table_size = 0;
    std::vector<PeSection> sections;
};

// Reads and bounds-checks the headers. Throws Error (bad input) naming `what` and the field.
PeLayout parse_pe(std::string_view image, std::string_view what);

// The PE checksum, fed in pieces: 16-bit little-endian words summed with end-around carry,
// the 4 bytes at `checksum_offset` taken as zero, plus the file size.
class PeChecksum {
  public:
    explicit PeChecksum(std::uint64_t checksum_offset) : checksum_offset_(checksum_offset) {}
    // The bytes at file offset `offset` (pieces may come in any order, none twice).
    void add(std::uint64_t offset, std::string_view bytes);
    std::uint32_t finish(std::uint64_t file_size) const;

  private:
    std::uint64_t checksum_offset_;
    std::uint64_t sum_ = 0;
};

// The PE checksum of `image` (the 4 bytes at `checksum_offset` taken as zero).
std::uint32_t pe_checksum(std::string_view image, std::size_t checksum_offset);

// A section to append: its name (1..8 characters) and content, the bytes given or, with `file`
// set, that file's bytes (read only when the image is read).
struct PeAppendedSection {
    std::string name;
    std::string_view content;
    std::filesystem::path file;
};

// A PE image made of the stub's bytes (with the new section table) and appended sections that
// may live in files: read in pieces, never whole.
class PeImage {
  public:
    std::uint64_t size() const { return size_; }
    const PeLayout& layout() const { return layout_; }
    // The header part: the stub up to its last section, with the new section table, padded to
    // FileAlignment. Fields in it (checksum, certificate directory) may be patched.
    std::string& head() { return head_; }
    const std::string& head() const { return head_; }
    // Calls `sink` with the bytes of [offset, offset + length), in order, in pieces of at most
    // 1 MiB. Throws Error (build failed) naming a section file that cannot be read or whose size
    // changed since the image was assembled; std::out_of_range past size().
    void read(std::uint64_t offset, std::uint64_t length,
              const std::function<void(std::string_view)>& sink) const;

  private:
    friend PeImage assemble_pe_sections(std::string_view, const std::vector<PeAppendedSection>&,
                                        std::string_view);
    struct Piece {
        std::uint64_t offset = 0; // in the image
        std::uint64_t size = 0;   // content bytes; zeros follow up to `padded`
        std::uint64_t padded = 0;
        std::string_view bytes;
        std::filesystem::path file;
    };
    std::string head_;
    std::vector<Piece> pieces_;
    PeLayout layout_;
    std::uint64_t size_ = 0;
};

// The stub with `sections` appended, as append_pe_sections() lays it out (the checksum left
// zero: sign_pe_to_file() computes it), with file sections left in their files (their sizes
// are taken now). Byte views given as content must outlive the
// result. Throws as append_pe_sections(), and Error (bad input) naming a section file that
// cannot be read.
PeImage assemble_pe_sections(std::string_view stub, const std::vector<PeAppendedSection>& sections,
                             std::string_view what);

// The stub with `sections` appended in order after its own (virtual addresses aligned to the
// stub's SectionAlignment, raw data to its FileAlignment, read-only initialized data), its
// certificate table and any data after its last section dropped, SizeOfImage and the checksum
// updated. Throws Error (bad input) naming `what` when the stub's headers have no room for the
// new section entries or the result would pass k_max_pe_image_size.
std::string append_pe_sections(std::string_view stub,
                               const std::vector<PeAppendedSection>& sections,
                               std::string_view what);

} // namespace edgeforge::secureboot

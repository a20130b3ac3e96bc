// PE/COFF images as UEFI loads them: the header fields a UKI builder and an Authenticode signer
// need, appending sections to an EFI stub, and the PE checksum. Images are held in memory.
#pragma once

#include <cstdint>
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

// The PE checksum of `image` (the 4 bytes at `checksum_offset` taken as zero).
std::uint32_t pe_checksum(std::string_view image, std::size_t checksum_offset);

// A section to append: its name (1..8 characters) and content.
struct PeAppendedSection {
    std::string name;
    std::string_view content;
};

// The stub with `sections` appended in order after its own (virtual addresses aligned to the
// stub's SectionAlignment, raw data to its FileAlignment, read-only initialized data), its
// certificate table and any data after its last section dropped, SizeOfImage and the checksum
// updated. Throws Error (bad input) naming `what` when the stub's headers have no room for the
// new section entries or the result would pass k_max_pe_image_size.
std::string append_pe_sections(std::string_view stub,
                               const std::vector<PeAppendedSection>& sections,
                               std::string_view what);

} // namespace edgeforge::secureboot

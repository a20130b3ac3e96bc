// Unit tests for secureboot/pe and secureboot/authenticode: sections appended to Debian's
// systemd EFI stub (read back by objdump), signatures judged by sbverify with the signing
// certificate and with another one, reproducibility, and malformed images refused.
#include <doctest/doctest.h>

#include <filesystem>
#include <map>

#include "secureboot/authenticode.h"
#include "secureboot/keys.h"
#include "secureboot/pe.h"
#include "support/errors.h"
#include "util/bytes.h"
#include "util/digest.h"
#include "util/fs.h"
#include "util/process.h"

using namespace edgeforge;
using namespace edgeforge::secureboot;
using edgeforge::testing::error_of;

namespace {

const std::filesystem::path k_stub = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";

std::map<std::string, std::string> key_files(const std::string& org) {
    KeySetOptions options;
    options.org = org;
    options.not_before = 1700000000;
    std::map<std::string, std::string> files;
    for (auto& file : generate_key_set(options).files) {
        files[file.name] = std::move(file.content);
    }
    return files;
}

std::string uki_of(const std::string& stub) {
    return append_pe_sections(stub,
                              {{".osrel", "ID=edgeforge-test\n"},
                               {".cmdline", "console=ttyS0 rd.immucore.uki"},
                               {".initrd", std::string(70000, 'i')},
                               {".linux", std::string(123457, 'k')}},
                              "test stub");
}

} // namespace

TEST_CASE("appended sections are where objdump and the PE checksum expect them") {
    if (!std::filesystem::exists(k_stub)) {
        MESSAGE("systemd-boot-efi is not installed; skipped");
        return;
    }
    const std::string stub = util::read_file(k_stub);
    const std::string uki = uki_of(stub);
    const PeLayout layout = parse_pe(uki, "uki");
    REQUIRE(layout.sections.size() >= 4);
    const auto& last = layout.sections.back();
    CHECK(last.name == ".linux");
    CHECK(last.virtual_size == 123457);
    CHECK(last.virtual_address % layout.section_alignment == 0);
    CHECK(uki.substr(last.raw_pointer, 5) == "kkkkk");
    CHECK(pe_checksum(uki, layout.checksum_offset) ==
          util::le32(util::byte_span(uki), layout.checksum_offset));
    util::TempDir temp;
    util::write_file_atomically(temp.path() / "uki.efi", uki);
    const auto dump = util::run_process({"objdump", "-h", (temp.path() / "uki.efi").string()});
    REQUIRE(dump.exit_code == 0);
    for (const char* name : {".osrel", ".cmdline", ".initrd", ".linux", ".sdmagic"}) {
        CHECK_MESSAGE(dump.standard_output.find(name) != std::string::npos, name);
    }
}

TEST_CASE("sbverify accepts the signature with the db certificate and refuses another") {
    if (!std::filesystem::exists(k_stub) || !util::find_program("sbverify")) {
        MESSAGE("systemd-boot-efi or sbsigntool is not installed; skipped");
        return;
    }
    auto ours = key_files("ACME");
    auto theirs = key_files("Other");
    const std::string uki = uki_of(util::read_file(k_stub));
    const std::string signed_uki = sign_pe(uki, ours["db.key"], ours["db.pem"], 1700000000, "uki");
    util::TempDir temp;
    const auto file = temp.path() / "uki.efi";
    util::write_file_atomically(file, signed_uki);
    util::write_file_atomically(temp.path() / "db.pem", ours["db.pem"]);
    util::write_file_atomically(temp.path() / "other.pem", theirs["db.pem"]);
    const auto good =
        util::run_process({"sbverify", "--cert", (temp.path() / "db.pem").string(), file.string()});
    CHECK_MESSAGE(good.exit_code == 0, (good.standard_output + good.standard_error));
    const auto bad = util::run_process(
        {"sbverify", "--cert", (temp.path() / "other.pem").string(), file.string()});
    CHECK(bad.exit_code != 0);

    // The digest ignores the signature, and re-signing replaces it: same bytes every time.
    CHECK(authenticode_sha256(signed_uki, "signed") == authenticode_sha256(uki, "unsigned"));
    CHECK(sign_pe(signed_uki, ours["db.key"], ours["db.pem"], 1700000000, "uki") == signed_uki);
    const std::string other_time = sign_pe(uki, ours["db.key"], ours["db.pem"], 1700000001, "uki");
    CHECK(other_time != signed_uki);

    // A signed file with a flipped byte in a section no longer verifies.
    std::string tampered = signed_uki;
    const PeLayout layout = parse_pe(tampered, "signed");
    tampered[layout.sections.back().raw_pointer] ^= 1;
    util::write_file_atomically(file, tampered);
    CHECK(
        util::run_process({"sbverify", "--cert", (temp.path() / "db.pem").string(), file.string()})
            .exit_code != 0);

    CHECK_THROWS_AS(sign_pe(uki, theirs["db.key"], ours["db.pem"], 0, "uki"), Error);
}

TEST_CASE("malformed PE images are bad input naming the image") {
    CHECK(
        error_of([] { parse_pe("not a pe", "junk.efi"); }, ExitCode::bad_input).find("junk.efi") !=
        std::string::npos);
    std::string image(512, '\0');
    image[0] = 'M';
    image[1] = 'Z';
    image[0x3c] = static_cast<char>(0xf0);
    image[0x3d] = static_cast<char>(0xff);
    CHECK(error_of([&] { parse_pe(image, "far.efi"); }, ExitCode::bad_input)
              .find("no PE signature") != std::string::npos);
    // A PE32+ optional header of 96 bytes at the very end of the image: its directory count
    // would lie past the end (pe_fuzz found the read past the buffer).
    std::string short_optional(0x80 + 24 + 96, '\0');
    short_optional[0] = 'M';
    short_optional[1] = 'Z';
    short_optional[0x3c] = static_cast<char>(0x80);
    short_optional.replace(0x80, 4, std::string("PE\0\0", 4));
    short_optional[0x84 + 16] = 96; // SizeOfOptionalHeader
    short_optional[0x98] = 0x0b;    // PE32+ magic 0x20b
    short_optional[0x99] = 0x02;
    CHECK(error_of([&] { parse_pe(short_optional, "short.efi"); }, ExitCode::bad_input)
              .find("ends before its data directories") != std::string::npos);
    if (std::filesystem::exists(k_stub)) {
        std::string stub = util::read_file(k_stub);
        const PeLayout layout = parse_pe(stub, "stub");
        // Claim more sections than the headers hold.
        stub[layout.coff_offset + 2] = static_cast<char>(90);
        CHECK_THROWS_AS(parse_pe(stub, "stub"), Error);
        // No room for 80 more section entries.
        std::vector<PeAppendedSection> many(80, PeAppendedSection{".x", "x"});
        CHECK(error_of([&] { append_pe_sections(util::read_file(k_stub), many, "stub"); },
                       ExitCode::bad_input)
                  .find("no room") != std::string::npos);
    }
}

TEST_CASE("a UKI assembled from files and signed in pieces is the in-memory UKI, signed") {
    if (!std::filesystem::exists(k_stub)) {
        MESSAGE("systemd-boot-efi is not installed; skipped");
        return;
    }
    auto ours = key_files("ACME");
    const std::string stub = util::read_file(k_stub);
    util::TempDir temp;
    // Odd sizes (padding after each file section) and an initrd larger than one 1 MiB read.
    std::string initrd((3 << 20) + 12345, '\0');
    for (std::size_t i = 0; i < initrd.size(); ++i) {
        initrd[i] = static_cast<char>((i * 2654435761u) >> 13);
    }
    const std::string kernel(123457, 'k');
    util::write_file_atomically(temp.path() / "initrd", initrd);
    util::write_file_atomically(temp.path() / "kernel", kernel);
    const std::string in_memory = sign_pe(append_pe_sections(stub,
                                                             {{".osrel", "ID=edgeforge-test\n"},
                                                              {".cmdline", "console=ttyS0"},
                                                              {".initrd", initrd},
                                                              {".linux", kernel}},
                                                             "stub"),
                                          ours["db.key"], ours["db.pem"], 1700000000, "uki");
    PeImage image = assemble_pe_sections(stub,
                                         {{".osrel", "ID=edgeforge-test\n"},
                                          {".cmdline", "console=ttyS0"},
                                          {".initrd", {}, temp.path() / "initrd"},
                                          {".linux", {}, temp.path() / "kernel"}},
                                         "stub");
    const auto out = temp.path() / "uki.efi";
    sign_pe_to_file(image, ours["db.key"], ours["db.pem"], 1700000000, "uki", out);
    const std::string streamed = util::read_file(out);
    CHECK(streamed.size() == in_memory.size());
    CHECK(streamed == in_memory);
    CHECK(pe_checksum(streamed, parse_pe(streamed, "uki").checksum_offset) ==
          util::le32(util::byte_span(streamed), parse_pe(streamed, "uki").checksum_offset));

    // A section file that changes size between assembly and signing fails the build, and
    // nothing is left under the final name.
    PeImage stale = assemble_pe_sections(stub, {{".initrd", {}, temp.path() / "initrd"}}, "stub");
    util::write_file_atomically(temp.path() / "initrd", "shorter");
    const auto stale_out = temp.path() / "stale.efi";
    CHECK(error_of(
              [&] { sign_pe_to_file(stale, ours["db.key"], ours["db.pem"], 0, "uki", stale_out); },
              ExitCode::build_failed)
              .find("changed while the UKI was built") != std::string::npos);
    CHECK_FALSE(std::filesystem::exists(stale_out));
    // A missing section file is bad input naming it.
    CHECK(
        error_of(
            [&] {
                (void)assemble_pe_sections(stub, {{".linux", {}, temp.path() / "absent"}}, "stub");
            },
            ExitCode::bad_input)
            .find("absent") != std::string::npos);
}

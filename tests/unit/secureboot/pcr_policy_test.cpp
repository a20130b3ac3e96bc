// Unit tests for secureboot/pcr_policy: PCR 11 predictions and the .pcrsig JSON compared byte for
// byte with Debian 12's systemd-measure 252 (calculate, and sign against a software TPM, swtpm),
// known answers a TPM computed, and the refusals.
//
// The sign comparison needs swtpm and the tpm2-tss libraries systemd-measure loads
// (libtss2-esys-3.0.2-0, libtss2-rc0, libtss2-mu0, libtss2-tcti-swtpm0). Without them it falls
// back to checking every "sig" with OpenSSL against the public key and the bank's hash, every
// "pkfp" against `openssl rsa -pubin -RSAPublicKey_out -outform DER` (systemd's fingerprint is of
// the PKCS#1 key, not the SubjectPublicKeyInfo), and "pol" by the known answers below
// (policy digests swtpm computed through systemd-measure sign 252).
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "secureboot/pcr_policy.h"
#include "support/data.h"
#include "support/errors.h"
#include "util/base64.h"
#include "util/digest.h"
#include "util/fs.h"
#include "util/openssl.h"
#include "util/process.h"

using namespace edgeforge;
using namespace edgeforge::secureboot;
using edgeforge::testing::error_of;

namespace {

namespace stdfs = std::filesystem;

const stdfs::path k_measure_tool = "/usr/lib/systemd/systemd-measure";

std::vector<std::uint8_t> from_hex(std::string_view hex) {
    std::vector<std::uint8_t> out;
    for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
        out.push_back(
            static_cast<std::uint8_t>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
    }
    return out;
}

void write(const stdfs::path& file, std::string_view content) {
    std::ofstream out(file, std::ios::binary);
    out.write(content.data(), static_cast<std::streamsize>(content.size()));
    REQUIRE(out.good());
}

// `openssl genpkey` with the given algorithm options into `file`; the PEM text.
std::string generate_key(const stdfs::path& file, const std::vector<std::string>& options) {
    std::vector<std::string> argv{"openssl", "genpkey"};
    argv.insert(argv.end(), options.begin(), options.end());
    argv.insert(argv.end(), {"-out", file.string()});
    const auto result = util::run_process(argv);
    REQUIRE_MESSAGE(result.exit_code == 0, result.standard_error);
    return util::read_file(file);
}

std::string generate_rsa_key(const stdfs::path& file) {
    return generate_key(file, {"-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"});
}

// A UKI's sections in a temporary directory: every measured section, an initrd over three read
// buffers long, the .pcrpkey of a fresh RSA key.
struct UkiFixture {
    util::TempDir dir;
    std::string private_key;
    std::string public_key;

    UkiFixture() {
        private_key = generate_rsa_key(dir.path() / "tpm2-pcr-private.pem");
        public_key = pcr_public_key_pem(private_key);
        write(dir.path() / "tpm2-pcr-public.pem", public_key);
        write(dir.path() / "linux", "MZ" + testing::pseudo_random_bytes(200000, 1));
        write(dir.path() / "osrel", "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n");
        write(dir.path() / "cmdline", "console=ttyS0 root=LABEL=root ro quiet");
        write(dir.path() / "initrd", testing::pseudo_random_bytes(3 * (1 << 20) + 4321, 2));
        write(dir.path() / "splash", "BM" + testing::pseudo_random_bytes(1000, 3));
        write(dir.path() / "dtb", "\xd0\x0d\xfe\xed" + testing::pseudo_random_bytes(500, 4));
        write(dir.path() / "pcrpkey", public_key);
    }

    // The files as systemd-measure options.
    std::vector<std::string> section_options() const {
        std::vector<std::string> out;
        for (const std::string_view name : k_measured_uki_sections) {
            const std::string bare(name.substr(1));
            out.push_back("--" + bare + "=" + (dir.path() / bare).string());
        }
        return out;
    }

    // The same sections for predict_pcr11, shuffled, half as files and half as bytes.
    std::vector<UkiSectionContent> sections() const {
        std::vector<UkiSectionContent> out;
        for (const std::string_view name : k_measured_uki_sections) {
            const stdfs::path file = dir.path() / std::string(name.substr(1));
            if (out.size() % 2 == 0) {
                out.push_back({std::string(name), file});
            } else {
                out.push_back({std::string(name), util::read_file(file)});
            }
        }
        std::reverse(out.begin(), out.end());
        return out;
    }
};

util::ProcessResult run_measure(const std::string& verb, const std::vector<std::string>& options) {
    std::vector<std::string> argv{k_measure_tool.string(), verb};
    argv.insert(argv.end(), options.begin(), options.end());
    return util::run_process(argv);
}

// A free loopback TCP port whose successor is free too (swtpm's server and control channels).
std::optional<int> free_port_pair() {
    const auto bindable = [](int port) {
        const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        address.sin_port = htons(static_cast<std::uint16_t>(port));
        socklen_t length = sizeof address;
        const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&address), length) == 0 &&
                        ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0;
        ::close(fd);
        return ok ? ntohs(address.sin_port) : 0;
    };
    for (int attempt = 0; attempt < 10; ++attempt) {
        const int port = bindable(0);
        if (port > 0 && port < 65535 && bindable(port + 1) == port + 1) {
            return port;
        }
    }
    return std::nullopt;
}

// A software TPM 2.0 (swtpm, daemonized) on loopback, stopped by its process id when destroyed.
class Swtpm {
  public:
    explicit Swtpm(const stdfs::path& state) {
        stdfs::create_directories(state);
        for (int attempt = 0; attempt < 3 && pid_ <= 0; ++attempt) {
            start(state);
        }
    }
    // Stops swtpm and waits (up to 5 s) until it has exited, so that it no longer writes its
    // state into a directory about to be removed.
    ~Swtpm() {
        if (pid_ <= 0 || ::kill(pid_, SIGTERM) != 0) {
            return;
        }
        for (int tick = 0; tick < 500 && alive(); ++tick) {
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
    }
    Swtpm(const Swtpm&) = delete;
    Swtpm& operator=(const Swtpm&) = delete;

    bool running() const { return pid_ > 0; }
    std::string device() const { return "swtpm:port=" + std::to_string(port_); }

  private:
    // Still running: /proc has it and it is not a zombie (daemonized, it is not our child).
    bool alive() const {
        std::ifstream stat("/proc/" + std::to_string(pid_) + "/stat");
        std::string line;
        if (!std::getline(stat, line)) {
            return false;
        }
        const std::size_t end = line.rfind(')');
        return end == std::string::npos || end + 2 >= line.size() || line[end + 2] != 'Z';
    }

    void start(const stdfs::path& state) {
        const auto port = free_port_pair();
        if (!port) {
            return;
        }
        const stdfs::path pid_file = state / "swtpm.pid";
        const auto result = util::run_process(
            {"swtpm", "socket", "--tpm2", "--tpmstate", "dir=" + state.string(), "--server",
             "type=tcp,port=" + std::to_string(*port) + ",bindaddr=127.0.0.1", "--ctrl",
             "type=tcp,port=" + std::to_string(*port + 1) + ",bindaddr=127.0.0.1", "--flags",
             "not-need-init,startup-clear", "--daemon", "--pid", "file=" + pid_file.string()});
        if (result.exit_code != 0 || !stdfs::exists(pid_file)) {
            MESSAGE("swtpm did not start: " << result.standard_error);
            return;
        }
        port_ = *port;
        pid_ = std::stoi(util::read_file(pid_file));
    }

    int port_ = 0;
    pid_t pid_ = 0;
};

// The sign output of systemd-measure, or nothing (with the reason) when no TPM can be had.
// Each call runs its own swtpm on its own state directory (`state_name`).
std::optional<std::string> tool_signature(const UkiFixture& uki, const std::string& state_name,
                                          const std::vector<std::string>& extra_options) {
    if (!util::find_program("swtpm")) {
        MESSAGE("swtpm is not installed: sign output checked with OpenSSL instead");
        return std::nullopt;
    }
    Swtpm tpm(uki.dir.path() / state_name);
    REQUIRE(tpm.running());
    std::vector<std::string> options = uki.section_options();
    options.insert(options.end(),
                   {"--private-key=" + (uki.dir.path() / "tpm2-pcr-private.pem").string(),
                    "--public-key=" + (uki.dir.path() / "tpm2-pcr-public.pem").string(),
                    "--tpm2-device=" + tpm.device(), "--json=short"});
    options.insert(options.end(), extra_options.begin(), extra_options.end());
    const auto result = run_measure("sign", options);
    // systemd 252 says "libtss2-esys.so.0 is not installed: ..." or "Failed to load
    // libtss2-tcti-swtpm.so.0: ..." when it cannot dlopen tpm2-tss.
    const bool no_tss = result.standard_error.find("libtss2") != std::string::npos ||
                        result.standard_error.find("TPM2 support") != std::string::npos;
    if (result.exit_code != 0 && no_tss) {
        MESSAGE("tpm2-tss is not installed (" << result.standard_error
                                              << "): sign output checked with OpenSSL instead");
        return std::nullopt;
    }
    REQUIRE_MESSAGE(result.exit_code == 0, result.standard_error);
    return result.standard_output;
}

const EVP_MD* bank_md(const std::string& bank) {
    return EVP_get_digestbyname(bank.c_str());
}

// Every entry of a .pcrsig checked with OpenSSL: the signature over "pol" with the bank's hash,
// "pkfp" the SHA-256 of the PKCS#1 public key.
void verify_signatures(const std::string& pcrsig, const UkiFixture& uki) {
    const auto der = util::run_process({"openssl", "rsa", "-pubin", "-in",
                                        (uki.dir.path() / "tpm2-pcr-public.pem").string(),
                                        "-RSAPublicKey_out", "-outform", "DER"});
    REQUIRE(der.exit_code == 0);
    util::Bio bio(BIO_new_mem_buf(uki.public_key.data(), static_cast<int>(uki.public_key.size())));
    const util::Pkey key(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
    REQUIRE(key);
    const auto document = nlohmann::json::parse(pcrsig);
    for (const auto& [bank, entries] : document.items()) {
        for (const auto& entry : entries) {
            CHECK(entry["pkfp"] == util::sha256_hex(der.standard_output));
            const auto policy = from_hex(entry["pol"].get<std::string>());
            const auto signature = util::base64_decode(entry["sig"].get<std::string>());
            REQUIRE(signature);
            util::MdCtx context(EVP_MD_CTX_new());
            REQUIRE(EVP_DigestVerifyInit(context.get(), nullptr, bank_md(bank), nullptr,
                                         key.get()) == 1);
            CHECK(EVP_DigestVerify(context.get(),
                                   reinterpret_cast<const unsigned char*>(signature->data()),
                                   signature->size(), policy.data(), policy.size()) == 1);
        }
    }
}

// Predictions for linux "MZfakekernel" and os-release "ID=debian\nVERSION_ID=12\n", as
// `systemd-measure calculate --linux=... --osrel=...` 252 printed them.
constexpr std::string_view k_sha1_enter_initrd = "724fe95e5a7b285b08652ae5fbc6ccbedd6fb906";
constexpr std::string_view k_sha256_enter_initrd =
    "35259d69029fa65168066d16d1c2532a2de1d7172c697b42e4cb442a358a00a3";
constexpr std::string_view k_sha256_ready =
    "19c7826de5369c7c33ea1747a566856d3af1b79e8d2e2f0b61936bc1eb7c0fa0";
constexpr std::string_view k_sha512_ready =
    "245469b9a291965b181e861f573d1ff613162892148a3e0f45f3eceeb0a31cd727ba12ae3f4fda1d47558976f3890a"
    "7dbe2b4eb56b88b6565f48b012ba4562be";

} // namespace

TEST_CASE("PCR banks are parsed in any case and named in lower case") {
    CHECK(parse_pcr_bank("sha256") == PcrBank::sha256);
    CHECK(parse_pcr_bank("SHA1") == PcrBank::sha1);
    CHECK(parse_pcr_bank("Sha384") == PcrBank::sha384);
    CHECK(parse_pcr_bank("sha512") == PcrBank::sha512);
    CHECK_FALSE(parse_pcr_bank("sha224"));
    CHECK_FALSE(parse_pcr_bank(""));
    for (const PcrBank bank : all_pcr_banks()) {
        CHECK(parse_pcr_bank(pcr_bank_name(bank)) == bank);
    }
}

TEST_CASE("PCR phases default to systemd-measure's and are normalized as it does") {
    CHECK(default_pcr_phases() ==
          std::vector<std::string>{"enter-initrd", "enter-initrd:leave-initrd",
                                   "enter-initrd:leave-initrd:sysinit",
                                   "enter-initrd:leave-initrd:sysinit:ready"});
    CHECK(normalize_pcr_phase("::enter-initrd::leave-initrd:") == "enter-initrd:leave-initrd");
    CHECK(normalize_pcr_phase(":") == "");
    CHECK(error_of([] { normalize_pcr_phase("enter initrd"); }, ExitCode::bad_input)
              .find("enter initrd") != std::string::npos);
    CHECK(error_of([] { normalize_pcr_phase(std::string(2000, 'a')); }, ExitCode::bad_input)
              .find("2000") != std::string::npos);
    const std::vector<std::string> too_many(k_max_pcr_phases + 1, "ready");
    error_of(
        [&] {
            predict_pcr11({{".linux", std::string("MZ")}}, {}, too_many);
        },
        ExitCode::bad_input);
}

TEST_CASE("predict_pcr11 gives the values systemd-measure 252 printed") {
    const std::vector<UkiSectionContent> sections{
        {".cmdline", std::string()}, // empty: skipped, as the stub skips it
        {".osrel", std::string("ID=debian\nVERSION_ID=12\n")},
        {".linux", std::string("MZfakekernel")}};
    const auto all = predict_pcr11(sections, {}, {});
    REQUIRE(all.size() == 16); // four phases, four banks each
    CHECK(all[0].bank == PcrBank::sha1);
    CHECK(all[0].phase == "enter-initrd");
    CHECK(all[0].hex() == k_sha1_enter_initrd);
    CHECK(all[1].hex() == k_sha256_enter_initrd);
    CHECK(all[13].bank == PcrBank::sha256);
    CHECK(all[13].phase == "enter-initrd:leave-initrd:sysinit:ready");
    CHECK(all[13].hex() == k_sha256_ready);
    CHECK(all[15].hex() == k_sha512_ready);

    const auto one = predict_pcr11(sections, {PcrBank::sha256, PcrBank::sha256}, {"enter-initrd"});
    REQUIRE(one.size() == 1);
    CHECK(one[0].hex() == k_sha256_enter_initrd);
}

TEST_CASE("pcr_policy_digest gives the TPM2_PolicyPCR digest a TPM computed") {
    // PCR 11 values and the policy digests swtpm computed for them in systemd-measure sign 252.
    CHECK(util::to_hex(
              pcr_policy_digest(PcrBank::sha1, from_hex("b168f2dae240576dec7584869f1c6114452d6d64"))
                  .data(),
              32) == "a5b4a758cf026f7952dd1d189b1f38dc88828a827a2b9106a2ac860f0d984bcb");
    const auto sha256 = pcr_policy_digest(
        PcrBank::sha256,
        from_hex("28b9b95561d8e6d59f8fadb8d90e40be496bf0127ebae3be244820cb17d3222a"));
    CHECK(util::to_hex(sha256.data(), sha256.size()) ==
          "016b6b41b2be17587df6b6e39e7475033188085338205893c9528f7c9629e9c9");
    const auto sha384 =
        pcr_policy_digest(PcrBank::sha384, from_hex("93ed798820e46a741df5fc00a93e9ac1ec60f466a872"
                                                    "4c52275e275175505dbf5e361166dda6462c35f1dbe4"
                                                    "5df96d55"));
    CHECK(util::to_hex(sha384.data(), sha384.size()) ==
          "3e050c031554c0ac53f43bdc033b74ce265ebce7bd7c5857ff7c45c1d8e27240");
    const auto sha512 = pcr_policy_digest(
        PcrBank::sha512,
        from_hex("c4dd968445dd03bbc48a03b56295ec92d4d63032b946d7fe0b5bf4434a7cf0868e7362b765b5ca7a"
                 "f2eba77d26be7d5f4c428573a9ed8af58de45df7d38da1c2"));
    CHECK(util::to_hex(sha512.data(), sha512.size()) ==
          "0ece7ac7333aa7e9f06b21c477bafeeadfef77245255c4a1bcad6066b2d2744b");
    CHECK(error_of([] { pcr_policy_digest(PcrBank::sha256, std::vector<std::uint8_t>(20)); },
                   ExitCode::bad_input)
              .find("sha256") != std::string::npos);
}

TEST_CASE("predict_pcr11 refuses unknown and repeated sections and unreadable files") {
    CHECK(error_of(
              [] {
                  predict_pcr11({{".text", std::string("x")}}, {}, {});
              },
              ExitCode::bad_input)
              .find(".text") != std::string::npos);
    CHECK(
        error_of(
            [] {
                predict_pcr11({{".linux", std::string("a")}, {".linux", std::string("b")}}, {}, {});
            },
            ExitCode::bad_input)
            .find(".linux") != std::string::npos);
    util::TempDir dir;
    const stdfs::path missing = dir.path() / "no-such-initrd";
    CHECK(error_of(
              [&] {
                  predict_pcr11({{".initrd", missing}}, {}, {});
              },
              ExitCode::bad_input)
              .find(missing.string()) != std::string::npos);
    CHECK(error_of(
              [&] {
                  predict_pcr11({{".initrd", dir.path()}}, {}, {});
              },
              ExitCode::bad_input)
              .find(dir.path().string()) != std::string::npos);
}

TEST_CASE("sign_pcr_predictions refuses bad keys") {
    util::TempDir dir;
    const std::string key = generate_rsa_key(dir.path() / "a.pem");
    const std::string other = generate_rsa_key(dir.path() / "b.pem");
    const std::string ec = generate_key(
        dir.path() / "ec.pem", {"-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"});
    const auto predictions = predict_pcr11({{".linux", std::string("MZ")}}, {PcrBank::sha256}, {});
    CHECK(error_of([&] { sign_pcr_predictions(predictions, "garbage", std::nullopt); },
                   ExitCode::bad_input)
              .find("private key") != std::string::npos);
    CHECK(
        error_of([&] { sign_pcr_predictions(predictions, ec, std::nullopt); }, ExitCode::bad_input)
            .find("RSA") != std::string::npos);
    CHECK(error_of([&] { pcr_public_key_pem(ec); }, ExitCode::bad_input).find("RSA") !=
          std::string::npos);
    const std::string other_public = pcr_public_key_pem(other);
    CHECK(
        error_of([&] { sign_pcr_predictions(predictions, key, other_public); }, ExitCode::bad_input)
            .find("PCR public key") != std::string::npos);
    CHECK(error_of([&] { sign_pcr_predictions(predictions, key, std::string_view("junk")); },
                   ExitCode::bad_input)
              .find("PCR public key") != std::string::npos);
    error_of([&] { sign_pcr_predictions({}, key, std::nullopt); }, ExitCode::bad_input);
    CHECK(pcr_public_key_pem(key).starts_with("-----BEGIN PUBLIC KEY-----\n"));
}

TEST_CASE("predict_pcr11 matches systemd-measure calculate byte for byte") {
    if (!stdfs::exists(k_measure_tool)) {
        MESSAGE("skipped: systemd-measure is not installed (systemd 252)");
        return;
    }
    const UkiFixture uki;
    const auto all = run_measure("calculate", [&] {
        auto options = uki.section_options();
        options.push_back("--json=short");
        return options;
    }());
    REQUIRE_MESSAGE(all.exit_code == 0, all.standard_error);
    CHECK(pcr_predictions_json(predict_pcr11(uki.sections(), {}, {})) == all.standard_output);

    // Chosen banks and phases: normalized, sorted and deduplicated by both.
    auto options = uki.section_options();
    options.insert(options.end(), {"--bank=SHA256", "--bank=sha1", "--phase=ready:x",
                                   "--phase=:enter-initrd::leave-initrd:", "--phase=ready:x",
                                   "--phase=:", "--json=short"});
    const auto chosen = run_measure("calculate", options);
    REQUIRE_MESSAGE(chosen.exit_code == 0, chosen.standard_error);
    const auto predictions =
        predict_pcr11(uki.sections(), {PcrBank::sha256, PcrBank::sha1},
                      {"ready:x", ":enter-initrd::leave-initrd:", "ready:x", ":"});
    CHECK(predictions.size() == 6);
    CHECK(pcr_predictions_json(predictions) == chosen.standard_output);
}

TEST_CASE("sign_pcr_predictions matches systemd-measure sign byte for byte") {
    if (!stdfs::exists(k_measure_tool)) {
        MESSAGE("skipped: systemd-measure is not installed (systemd 252)");
        return;
    }
    const UkiFixture uki;
    const std::string all =
        sign_pcr_predictions(predict_pcr11(uki.sections(), {}, {}), uki.private_key, std::nullopt);
    const std::string chosen =
        sign_pcr_predictions(predict_pcr11(uki.sections(), {PcrBank::sha256}, {"b:c", "a"}),
                             uki.private_key, uki.public_key);
    const auto document = nlohmann::json::parse(all);
    CHECK(document.size() == 4);
    CHECK(document["sha1"].size() == 4);
    CHECK(document["sha256"][0]["pcrs"] == nlohmann::json::array({11}));
    verify_signatures(all, uki);
    verify_signatures(chosen, uki);

    if (const auto tool = tool_signature(uki, "tpm-all", {})) {
        CHECK(all == *tool);
    }
    if (const auto tool =
            tool_signature(uki, "tpm-chosen", {"--bank=sha256", "--phase=b:c", "--phase=a"})) {
        CHECK(chosen == *tool);
    }
}

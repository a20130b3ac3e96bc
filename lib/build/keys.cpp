// `edgeforge keys generate`: the Secure Boot key directory of a project (Trusted Boot, step 1).
#include "build/keys.h"

#include <cstdlib>
#include <ctime>

#include <fmt/format.h>

#include "base/error.h"
#include "secureboot/efi_vars.h"
#include "secureboot/pcr_policy.h"
#include "secureboot/signing_key.h"
#include "util/fs.h"
#include "util/strings.h"

namespace edgeforge {
namespace {

// SOURCE_DATE_EPOCH when set (decimal seconds), else now.
std::int64_t start_time() {
    const char* text = std::getenv("SOURCE_DATE_EPOCH");
    if (text == nullptr || *text == '\0') {
        return static_cast<std::int64_t>(std::time(nullptr));
    }
    const std::string value(text);
    if (value.size() > 12 || value.find_first_not_of("0123456789") != std::string::npos) {
        throw bad_input("SOURCE_DATE_EPOCH '{}' is not a number of seconds since 1970: set it to "
                        "one (e.g. $(git log -1 --format=%ct)) or unset it",
                        value);
    }
    return std::stoll(value);
}

std::string utc_text(std::int64_t seconds) {
    const secureboot::EfiTime time = secureboot::efi_time_from_epoch(seconds);
    return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z", time.year, time.month, time.day,
                       time.hour, time.minute, time.second);
}

// The extra certificates of --include-cert-dir, then --include-cert.
std::vector<secureboot::ExtraSignatures> included(const KeysRequest& request) {
    std::vector<secureboot::ExtraSignatures> extra;
    if (!request.include_cert_dir.empty()) {
        extra = secureboot::read_included_cert_dir(request.include_cert_dir);
    }
    for (const auto& spec : request.include_certs) {
        extra.push_back(secureboot::read_included_cert(spec));
    }
    return extra;
}

std::filesystem::path key_directory(const KeysRequest& request,
                                    const std::filesystem::path& project_dir) {
    return request.directory.empty() ? project_dir / k_default_keys_directory : request.directory;
}

// A small file of the import directory, or nothing when it is absent or bad (the problem noted).
std::optional<std::string> read_key_file(const std::filesystem::path& file,
                                         std::vector<std::string>& problems) {
    std::error_code ec;
    if (!std::filesystem::exists(file, ec)) {
        return std::nullopt;
    }
    try {
        return secureboot::read_key_material(file, secureboot::k_max_key_file_size);
    } catch (const Error& error) {
        problems.emplace_back(error.what());
        return std::nullopt;
    }
}

nlohmann::json included_json(const std::vector<secureboot::ExtraSignatures>& extra,
                             std::string& text) {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& item : extra) {
        const bool lists = !item.signature_lists.empty();
        list.push_back({{"variable", item.variable},
                        {"file", item.origin},
                        {"certificates", item.certificates_der.size()},
                        {"signature_lists", lists}});
        text += fmt::format("  added to {}: {} ({})\n", item.variable, item.origin,
                            lists ? std::string("signature lists")
                                  : fmt::format("{} certificate{}", item.certificates_der.size(),
                                                item.certificates_der.size() == 1 ? "" : "s"));
    }
    return list;
}

// The files of a written key set, for --json (names and paths, never their content).
nlohmann::json files_json(const secureboot::KeySet& set, const std::filesystem::path& directory) {
    nlohmann::json files = nlohmann::json::array();
    for (const auto& file : set.files) {
        files.push_back({{"name", file.name},
                         {"path", (directory / file.name).string()},
                         {"private", file.secret}});
    }
    return files;
}

} // namespace

KeyLayout key_layout(const std::filesystem::path& directory) {
    std::error_code ec;
    KeyLayout layout;
    layout.canvos = std::filesystem::is_directory(directory / "private-keys", ec) &&
                    std::filesystem::is_directory(directory / "public-keys", ec);
    layout.secret = layout.canvos ? directory / "private-keys" : directory;
    layout.open = layout.canvos ? directory / "public-keys" : directory;
    layout.enrollment = layout.canvos ? directory / "enrollment" : directory;
    return layout;
}

CommandOutcome run_keys_import(const KeysRequest& request,
                               const std::filesystem::path& project_dir) {
    namespace stdfs = std::filesystem;
    const stdfs::path from = request.import_from;
    std::error_code ec;
    if (!stdfs::is_directory(from, ec)) {
        throw bad_input("keys import --from {}: not a directory", from.string());
    }
    const KeyLayout layout = key_layout(from);
    const bool canvos = layout.canvos;
    const stdfs::path& secret = layout.secret;
    const stdfs::path& open = layout.open;
    const std::int64_t now = static_cast<std::int64_t>(std::time(nullptr));
    std::vector<std::string> problems;
    secureboot::ImportedKeys keys;
    const std::array<const char*, 3> names{"PK", "KEK", "db"};
    for (std::size_t i = 0; i < names.size(); ++i) {
        const stdfs::path key_file = secret / (std::string(names[i]) + ".key");
        const stdfs::path certificate_file = open / (std::string(names[i]) + ".pem");
        const auto key = read_key_file(key_file, problems);
        const auto certificate = read_key_file(certificate_file, problems);
        if (!key || !certificate) {
            for (const auto* file : {&key_file, &certificate_file}) {
                if (std::error_code missing; !stdfs::exists(*file, missing)) {
                    problems.push_back(fmt::format("{} is missing", file->string()));
                }
            }
            continue;
        }
        for (auto& problem : secureboot::signing_pair_problems(
                 *key, *certificate, now, key_file.string(), certificate_file.string())) {
            problems.push_back(std::move(problem));
        }
        keys.pairs[i] = {*key, *certificate};
    }
    keys.pcr_private_pem = read_key_file(secret / "tpm2-pcr-private.pem", problems);
    if (keys.pcr_private_pem) {
        try {
            (void)secureboot::pcr_public_key_pem(*keys.pcr_private_pem);
        } catch (const Error& error) {
            problems.push_back(fmt::format("{}: {}", (secret / "tpm2-pcr-private.pem").string(),
                                           error.what()));
        }
    }
    if (!problems.empty()) {
        throw bad_input("keys import --from {} ({} layout): {}; nothing was written", from.string(),
                        canvos ? "CanvOS secure-boot/" : "flat", util::join(problems, "; "));
    }
    keys.extra = included(request);
    keys.timestamp = start_time();
    keys.org = request.org;
    const stdfs::path directory = key_directory(request, project_dir);
    keys.owner = secureboot::read_owner_guid(directory);
    const secureboot::KeySet set = secureboot::import_key_set(keys);
    secureboot::write_key_set(directory, set, request.force);

    CommandOutcome outcome;
    std::string included_text;
    const nlohmann::json included_list = included_json(keys.extra, included_text);
    outcome.text =
        fmt::format("imported PK, KEK and db from {} ({} layout) into {}: {} files\n"
                    "  TPM PCR policy key: {}\n"
                    "  owner GUID {}\n"
                    "{}"
                    "keep the private keys offline or in a secret store; never commit them\n",
                    from.string(), canvos ? "CanvOS secure-boot/" : "flat", directory.string(),
                    set.files.size(), keys.pcr_private_pem ? "yours" : "new (rsa2048)",
                    set.owner.str(), included_text);
    outcome.document = {{"directory", directory.string()},
                        {"from", from.string()},
                        {"layout", canvos ? "canvos" : "flat"},
                        {"pcr_key", keys.pcr_private_pem ? "imported" : "generated"},
                        {"owner_guid", set.owner.str()},
                        {"included", included_list},
                        {"files", files_json(set, directory)}};
    return outcome;
}

CommandOutcome run_keys_generate(const KeysRequest& request,
                                 const std::filesystem::path& project_dir) {
    const auto key_type = secureboot::parse_key_type(request.key_type);
    if (!key_type) {
        throw bad_input("--key-type: '{}' is not a key type; allowed: rsa2048 (the default, what "
                        "every firmware takes), rsa4096",
                        request.key_type);
    }
    const std::filesystem::path directory = key_directory(request, project_dir);
    secureboot::KeySetOptions options;
    options.org = request.org;
    options.days = request.days;
    options.key_type = *key_type;
    options.not_before = start_time();
    secureboot::check_key_set_options(options);
    options.extra = included(request);
    options.owner = secureboot::read_owner_guid(directory);
    const bool kept_guid = options.owner.has_value();

    const secureboot::KeySet set = secureboot::generate_key_set(options);
    secureboot::write_key_set(directory, set, request.force);

    CommandOutcome outcome;
    std::string included_text;
    const nlohmann::json included_list = included_json(options.extra, included_text);
    std::string secret;
    for (const auto& file : set.files) {
        if (file.secret) {
            secret += " " + file.name;
        }
    }
    outcome.text = fmt::format(
        "wrote {} files in {}\n"
        "  PK, KEK, db: NAME.key NAME.pem NAME.der NAME.esl NAME.auth ({}, CN \"{} PK\" ...)\n"
        "  TPM PCR policy key: tpm2-pcr-private.pem tpm2-pcr-public.pem (rsa2048)\n"
        "  owner GUID {} ({} GUID.txt)\n"
        "  certificates valid {} to {} ({} days)\n"
        "{}"
        "keep the private keys offline or in a secret store; never commit them:{}\n",
        set.files.size(), directory.string(), key_type_name(*key_type), request.org,
        set.owner.str(), kept_guid ? "kept from" : "new, in", utc_text(set.not_before),
        utc_text(set.not_after), request.days, included_text, secret);
    outcome.document = {{"directory", directory.string()},
                        {"org", request.org},
                        {"key_type", key_type_name(*key_type)},
                        {"owner_guid", set.owner.str()},
                        {"owner_guid_kept", kept_guid},
                        {"not_before", utc_text(set.not_before)},
                        {"not_after", utc_text(set.not_after)},
                        {"days", request.days},
                        {"included", included_list},
                        {"files", files_json(set, directory)}};
    return outcome;
}

} // namespace edgeforge

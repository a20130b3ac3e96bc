// `edgeforge keys generate`: the Secure Boot key directory of a project (Trusted Boot, step 1).
#include "build/keys.h"

#include <cstdlib>
#include <ctime>

#include <fmt/format.h>

#include "base/error.h"
#include "secureboot/efi_vars.h"

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

} // namespace

CommandOutcome run_keys_generate(const KeysRequest& request,
                                 const std::filesystem::path& project_dir) {
    const auto key_type = secureboot::parse_key_type(request.key_type);
    if (!key_type) {
        throw bad_input("--key-type: '{}' is not a key type; allowed: rsa2048 (the default, what "
                        "every firmware takes), rsa4096",
                        request.key_type);
    }
    const std::filesystem::path directory =
        request.directory.empty() ? project_dir / k_default_keys_directory : request.directory;
    secureboot::KeySetOptions options;
    options.org = request.org;
    options.days = request.days;
    options.key_type = *key_type;
    options.not_before = start_time();
    secureboot::check_key_set_options(options);
    if (!request.include_cert_dir.empty()) {
        options.extra = secureboot::read_included_cert_dir(request.include_cert_dir);
    }
    for (const auto& spec : request.include_certs) {
        options.extra.push_back(secureboot::read_included_cert(spec));
    }
    options.owner = secureboot::read_owner_guid(directory);
    const bool kept_guid = options.owner.has_value();

    const secureboot::KeySet set = secureboot::generate_key_set(options);
    secureboot::write_key_set(directory, set, request.force);

    CommandOutcome outcome;
    nlohmann::json included = nlohmann::json::array();
    std::string included_text;
    for (const auto& extra : options.extra) {
        const bool lists = !extra.signature_lists.empty();
        included.push_back({{"variable", extra.variable},
                            {"file", extra.origin},
                            {"certificates", extra.certificates_der.size()},
                            {"signature_lists", lists}});
        included_text += fmt::format(
            "  added to {}: {} ({})\n", extra.variable, extra.origin,
            lists ? std::string("signature lists")
                  : fmt::format("{} certificate{}", extra.certificates_der.size(),
                                extra.certificates_der.size() == 1 ? "" : "s"));
    }
    nlohmann::json files = nlohmann::json::array();
    std::string secret;
    for (const auto& file : set.files) {
        files.push_back({{"name", file.name},
                         {"path", (directory / file.name).string()},
                         {"private", file.secret}});
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
                        {"included", included},
                        {"files", files}};
    return outcome;
}

} // namespace edgeforge

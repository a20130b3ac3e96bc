// Registry credentials: --creds, docker config.json / auth.json auths, docker-credential-* helpers.
#include "oci/registry_credentials.h"

#include <cstdlib>
#include <system_error>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "oci/registry.h"
#include "oci/registry_transport.h"
#include "util/base64.h"
#include "util/fs.h"
#include "util/process.h"
#include "util/strings.h"
#include "util/json.h"

namespace edgeforge::oci {
namespace stdfs = std::filesystem;

namespace {

using nlohmann::json;

constexpr std::string_view k_docker_hub_server = "https://index.docker.io/v1/";

} // namespace

std::string normalise_registry_key(std::string_view key) {
    std::string_view host = util::trim(key);
    if (const auto scheme = host.find("://"); scheme != std::string_view::npos) {
        host.remove_prefix(scheme + 3);
    }
    if (const auto slash = host.find('/'); slash != std::string_view::npos) {
        host = host.substr(0, slash);
    }
    std::string normalised = util::to_lower(host);
    if (normalised == "index.docker.io" || normalised == "registry-1.docker.io") {
        normalised = std::string(k_docker_hub);
    }
    return normalised;
}

Credentials parse_credentials_option(std::string_view text) {
    const auto colon = text.find(':');
    if (colon == std::string_view::npos || colon == 0) {
        throw bad_input("--creds: expected USER:PASSWORD (the value is not shown)");
    }
    return Credentials{std::string(text.substr(0, colon)), std::string(text.substr(colon + 1)),
                       "--creds"};
}

std::optional<Credentials> run_credential_helper(std::string_view helper, std::string_view server) {
    const std::string program = "docker-credential-" + std::string(helper);
    if (!util::find_program(program)) {
        throw bad_input("the credential helper {} is not installed (not found on PATH); install "
                        "it or remove it from the docker config",
                        program);
    }
    util::ProcessOptions process_options;
    process_options.standard_input = std::string(server);
    util::ProcessResult result;
    try {
        result = util::run_process({program, "get"}, process_options);
    } catch (const std::system_error& failure) {
        throw bad_input("cannot run the credential helper {}: {}", program,
                        failure.code().message());
    }
    if (result.exit_code != 0) {
        const std::string said = clean_message(result.standard_output + result.standard_error);
        if (util::to_lower(said).find("credentials not found") != std::string::npos) {
            return std::nullopt;
        }
        // Only standard error goes into the message: standard output may hold a secret.
        throw bad_input("the credential helper {} failed for {} (exit {}): {}", program, server,
                        result.exit_code, clean_message(result.standard_error));
    }
    const auto answer = util::parse_json(result.standard_output, false);
    if (!answer.is_object() || !answer.contains("Secret") || !answer["Secret"].is_string()) {
        throw bad_input("the credential helper {} answered for {} without a JSON object with "
                        "Username and Secret",
                        program, server);
    }
    Credentials credentials;
    credentials.username = answer.value("Username", "");
    credentials.password = answer["Secret"].get<std::string>();
    credentials.source = program;
    return credentials;
}

std::optional<Credentials> credentials_from_auth_config(const json& config,
                                                        std::string_view registry,
                                                        std::string_view source,
                                                        const CredentialHelperRunner& helper) {
    if (!config.is_object()) {
        throw bad_input("{} is not a JSON object", source);
    }
    const std::string wanted = normalise_registry_key(registry);
    const std::string helper_server =
        wanted == k_docker_hub ? std::string(k_docker_hub_server) : wanted;
    const auto named_helper = [&](const json& name) -> std::optional<Credentials> {
        if (!name.is_string() || name.get<std::string>().empty()) {
            return std::nullopt;
        }
        return helper(name.get<std::string>(), helper_server);
    };

    if (const auto helpers = config.find("credHelpers");
        helpers != config.end() && helpers->is_object()) {
        for (const auto& [key, name] : helpers->items()) {
            if (normalise_registry_key(key) == wanted) {
                if (auto found = named_helper(name)) {
                    return found;
                }
            }
        }
    }
    if (const auto auths = config.find("auths"); auths != config.end() && auths->is_object()) {
        for (const auto& [key, entry] : auths->items()) {
            if (normalise_registry_key(key) != wanted || !entry.is_object()) {
                continue;
            }
            // docker login stores an OAuth2 refresh token as "identitytoken", next to an "auth"
            // of "USER:" (no password): the token is what authenticates.
            if (const auto token = entry.find("identitytoken");
                token != entry.end() && token->is_string() && !token->get<std::string>().empty()) {
                Credentials credentials;
                credentials.source = std::string(source);
                credentials.identity_token = token->get<std::string>();
                credentials.username = entry.value("username", "");
                if (const auto auth = entry.find("auth");
                    auth != entry.end() && auth->is_string()) {
                    if (const auto decoded =
                            util::base64_decode(util::trim(auth->get<std::string>()))) {
                        credentials.username = decoded->substr(0, decoded->find(':'));
                    }
                }
                return credentials;
            }
            if (const auto auth = entry.find("auth");
                auth != entry.end() && auth->is_string() && !auth->get<std::string>().empty()) {
                const auto decoded = util::base64_decode(util::trim(auth->get<std::string>()));
                const auto colon = decoded ? decoded->find(':') : std::string::npos;
                if (!decoded || colon == std::string::npos) {
                    throw bad_input("{}: auths.\"{}\".auth is not the base64 of USER:PASSWORD; "
                                    "log in again (docker login {})",
                                    source, key, registry);
                }
                return Credentials{decoded->substr(0, colon), decoded->substr(colon + 1),
                                   std::string(source)};
            }
            const std::string username = entry.value("username", "");
            const std::string password = entry.value("password", "");
            if (!username.empty() || !password.empty()) {
                return Credentials{username, password, std::string(source)};
            }
        }
    }
    if (const auto store = config.find("credsStore"); store != config.end()) {
        return named_helper(*store);
    }
    return std::nullopt;
}

std::optional<Credentials> find_credentials(std::string_view registry,
                                            const RegistryOptions& options) {
    if (options.credentials) {
        return options.credentials;
    }
    std::vector<stdfs::path> files = options.auth_files;
    if (files.empty()) {
        if (const char* auth_file = std::getenv("REGISTRY_AUTH_FILE");
            auth_file != nullptr && *auth_file != '\0') {
            std::error_code error;
            if (!stdfs::is_regular_file(auth_file, error)) {
                throw bad_input("REGISTRY_AUTH_FILE={} does not exist or is not a file", auth_file);
            }
            files.emplace_back(auth_file);
        } else if (const char* runtime = std::getenv("XDG_RUNTIME_DIR");
                   runtime != nullptr && *runtime != '\0') {
            files.push_back(stdfs::path(runtime) / "containers" / "auth.json");
        }
        if (const char* docker_config = std::getenv("DOCKER_CONFIG");
            docker_config != nullptr && *docker_config != '\0') {
            files.push_back(stdfs::path(docker_config) / "config.json");
        } else if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
            files.push_back(stdfs::path(home) / ".docker" / "config.json");
        }
    }
    for (const auto& file : files) {
        std::error_code error;
        if (!stdfs::is_regular_file(file, error)) {
            continue;
        }
        std::string text;
        try {
            text = util::read_file(file);
        } catch (const std::system_error& failure) {
            throw bad_input("cannot read {}: {}", file.string(), failure.code().message());
        }
        const auto config = util::parse_json(text, false);
        if (config.is_discarded()) {
            // The parser's message could quote the file, which holds secrets: name it only.
            throw bad_input("{} is not valid JSON; fix or remove it (credentials for registries "
                            "are read from it)",
                            file.string());
        }
        if (auto found = credentials_from_auth_config(config, registry, file.string())) {
            return found;
        }
    }
    return std::nullopt;
}

} // namespace edgeforge::oci

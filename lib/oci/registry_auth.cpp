// Registry authentication: WWW-Authenticate, Basic, bearer tokens, OAuth2 and identity tokens.
#include "oci/registry_auth.h"

#include <algorithm>
#include <cstdint>
#include <utility>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "util/base64.h"
#include "util/strings.h"
#include "util/json.h"

namespace edgeforge::oci {

namespace {

using nlohmann::json;

constexpr std::chrono::seconds k_default_token_lifetime{60};
constexpr std::chrono::seconds k_token_margin{10};
constexpr std::chrono::seconds k_max_token_lifetime{24 * 3600};
// Docker's credential helpers name an identity token's user "<token>"; it stands in when the
// auth file stored no user name.
constexpr std::string_view k_identity_token_user = "<token>";

std::string base64_credentials(const Credentials& credentials) {
    return util::base64_encode(credentials.username + ":" + credentials.password);
}

} // namespace

std::vector<AuthChallenge> parse_www_authenticate(std::string_view value) {
    std::vector<AuthChallenge> challenges;
    std::size_t pos = 0;
    const auto skip = [&](std::string_view characters) {
        while (pos < value.size() && characters.find(value[pos]) != std::string_view::npos) {
            ++pos;
        }
    };
    while (true) {
        skip(" \t,");
        if (pos >= value.size()) {
            break;
        }
        const std::size_t start = pos;
        while (pos < value.size() && value[pos] != ' ' && value[pos] != '\t' && value[pos] != ',' &&
               value[pos] != '=') {
            ++pos;
        }
        const std::string token(value.substr(start, pos - start));
        skip(" \t");
        if (pos < value.size() && value[pos] == '=' && !challenges.empty()) {
            ++pos;
            skip(" \t");
            std::string parameter;
            if (pos < value.size() && value[pos] == '"') {
                ++pos;
                while (pos < value.size() && value[pos] != '"') {
                    if (value[pos] == '\\' && pos + 1 < value.size()) {
                        ++pos;
                    }
                    parameter.push_back(value[pos++]);
                }
                ++pos; // the closing quote
            } else {
                const std::size_t begin = pos;
                while (pos < value.size() && value[pos] != ',') {
                    ++pos;
                }
                parameter = std::string(util::trim(value.substr(begin, pos - begin)));
            }
            challenges.back().parameters[util::to_lower(token)] = parameter;
        } else if (pos < value.size() && value[pos] == '=') {
            // A parameter before any scheme: not a valid challenge; skip it.
            while (pos < value.size() && value[pos] != ',') {
                ++pos;
            }
        } else if (!token.empty()) {
            challenges.push_back(AuthChallenge{util::to_lower(token), {}});
        }
    }
    return challenges;
}

std::optional<TokenAnswer> parse_token_answer(std::string_view body) {
    const auto document = util::parse_json(body, false);
    if (!document.is_object()) {
        return std::nullopt;
    }
    TokenAnswer answer;
    for (const char* key : {"token", "access_token"}) {
        const auto found = document.find(key);
        if (found != document.end() && found->is_string() && !found->get<std::string>().empty()) {
            answer.token = found->get<std::string>();
            break;
        }
    }
    if (answer.token.empty()) {
        return std::nullopt;
    }
    const auto expires = document.find("expires_in");
    if (expires != document.end() && expires->is_number_integer()) {
        answer.expires_in = expires->get<std::int64_t>();
    }
    return answer;
}

RegistryAuth::RegistryAuth(std::string registry, const RegistryOptions& options,
                           const RegistryTls& registry_tls)
    : registry_(std::move(registry)), options_(options), registry_tls_(registry_tls) {}

const std::optional<Credentials>& RegistryAuth::credentials() {
    if (!credentials_loaded_) {
        credentials_ = find_credentials(registry_, options_);
        credentials_loaded_ = true;
    }
    return credentials_;
}

std::string RegistryAuth::login_hint() const {
    return fmt::format("log in with 'docker login {}' (or podman login), set "
                       "REGISTRY_AUTH_FILE to an auth.json, or pass --creds USER:PASSWORD",
                       registry_);
}

Error RegistryAuth::unauthorized(std::string_view what, const Response& response) {
    const auto& found = credentials();
    const std::string said = parse_registry_error(response.body).text;
    const std::string status =
        fmt::format("{} {}", response.status, response.status == 401 ? "unauthorized" : "denied") +
        (said.empty() ? std::string() : " (" + said + ")");
    if (found && response.status == 403) {
        return bad_input("registry {}: {}: {}: the credentials from {} do not give access to "
                         "this; check the repository name and your permissions",
                         registry_, what, status, found->source);
    }
    if (found) {
        return bad_input("registry {}: {}: {}: the credentials from {} were not accepted; "
                         "check them, or {}",
                         registry_, what, status, found->source, login_hint());
    }
    return bad_input("registry {}: {}: {}: no credentials for {} were found; {}", registry_, what,
                     status, registry_, login_hint());
}

bool RegistryAuth::learn_challenge(const Response& response) {
    std::optional<AuthChallenge> chosen;
    for (const auto& header : response.headers) {
        if (!util::iequals(header.name, "WWW-Authenticate")) {
            continue;
        }
        for (auto& challenge : parse_www_authenticate(header.value)) {
            if (challenge.scheme == "bearer" && challenge.parameters.contains("realm")) {
                chosen = challenge;
            } else if (challenge.scheme == "basic" && !chosen) {
                chosen = challenge;
            }
        }
    }
    if (!chosen) {
        return false;
    }
    scheme_ = chosen->scheme;
    if (scheme_ == "bearer") {
        realm_ = chosen->parameters["realm"];
        service_ = chosen->parameters.contains("service") ? chosen->parameters["service"] : "";
    }
    return true;
}

bool RegistryAuth::reauthorize(const Response& response, const std::string& scope) {
    const std::string previous = scheme_;
    if (!learn_challenge(response)) {
        return false;
    }
    if (scheme_ == "basic") {
        // Basic credentials were sent already (or there are none): nothing new to try.
        return previous != "basic" && credentials().has_value();
    }
    tokens_.erase(scope);
    for (const auto& header : response.headers) {
        if (util::iequals(header.name, "WWW-Authenticate")) {
            for (auto& challenge : parse_www_authenticate(header.value)) {
                if (challenge.scheme == "bearer" && challenge.parameters.contains("scope")) {
                    scope_overrides_[scope] = challenge.parameters["scope"];
                }
            }
        }
    }
    return true;
}

std::optional<std::string> RegistryAuth::authorization(Connection& connection,
                                                       const std::string& scope,
                                                       const TlsSettings& tls) {
    if (scheme_ == "basic") {
        const auto& found = credentials();
        if (found) {
            return "Basic " + base64_credentials(*found);
        }
        return std::nullopt;
    }
    if (scheme_ != "bearer") {
        return std::nullopt;
    }
    if (const auto token = tokens_.find(scope);
        token != tokens_.end() && Clock::now() < token->second.expires) {
        return "Bearer " + token->second.value;
    }
    auto token = fetch_token(connection, scope, tls);
    const std::string header = "Bearer " + token.value;
    tokens_[scope] = std::move(token);
    return header;
}

// Credentials and refresh tokens never travel over plain HTTP: a WWW-Authenticate realm of
// http:// (from an HTTPS registry, or a test one) is refused unless its host is listed with
// --insecure-registry.
void RegistryAuth::refuse_plain_http_realm(const Credentials& found) const {
    const std::string lower = util::to_lower(std::string_view(realm_).substr(0, 7));
    if (lower != "http://") {
        return;
    }
    const std::string_view rest = std::string_view(realm_).substr(7);
    const std::string host(rest.substr(0, std::min(rest.find_first_of("/?#"), rest.size())));
    if (options_.is_insecure(host)) {
        return;
    }
    throw bad_input("registry {}: its token service {} is plain HTTP; edgeforge does not send the "
                    "credentials from {} there. Ask for an https:// token service, or list {} "
                    "with --insecure-registry if it is a test registry you trust",
                    registry_, util::printable_line(realm_, 200), found.source, host);
}

// The token request of the distribution spec: GET realm?service=..&scope=.., with
// `basic` (base64 USER:PASSWORD) when it is not empty.
Request RegistryAuth::get_token_request(CURL* handle, const std::string& scopes,
                                        const std::string& basic) const {
    Request request;
    request.url = realm_;
    if (!service_.empty()) {
        request.url = with_query(request.url, "service=" + url_escape(handle, service_));
    }
    for (const auto& one : util::split_list(scopes, ' ')) {
        request.url = with_query(request.url, "scope=" + url_escape(handle, one));
    }
    if (!basic.empty()) {
        request.headers.push_back("Authorization: Basic " + basic);
    }
    return request;
}

// The OAuth2 token request: POST realm with grant_type=refresh_token and the scopes
// space-separated in `form`, which holds the refresh token and so is never shown.
Request RegistryAuth::oauth_token_request(CURL* handle, const std::string& scopes,
                                          const std::string& refresh_token,
                                          std::string& form) const {
    form = "grant_type=refresh_token&refresh_token=" + url_escape(handle, refresh_token) +
           "&client_id=edgeforge";
    if (!service_.empty()) {
        form += "&service=" + url_escape(handle, service_);
    }
    if (const auto list = util::split_list(scopes, ' '); !list.empty()) {
        form += "&scope=" + url_escape(handle, util::join(list, " "));
    }
    Request request;
    request.method = "POST";
    request.url = realm_;
    request.has_body = true;
    request.body = form;
    request.headers.emplace_back("Content-Type: application/x-www-form-urlencoded");
    return request;
}

// A token for `scope`: with an identity token the OAuth2 POST, else the GET flow with
// Basic credentials when there are any.
RegistryAuth::Token RegistryAuth::fetch_token(Connection& connection, const std::string& scope,
                                              const TlsSettings& tls) {
    const auto override_scope = scope_overrides_.find(scope);
    const std::string wanted =
        override_scope != scope_overrides_.end() ? override_scope->second : scope;
    const auto& found = credentials();
    CURL* handle = connection.handle.get();
    const std::string what = fmt::format("token for {}", wanted);
    if (found) {
        refuse_plain_http_realm(*found);
    }
    if (!found || found->identity_token.empty()) {
        const Request request =
            get_token_request(handle, wanted, found ? base64_credentials(*found) : "");
        const Response response =
            perform_retrying(connection, request, tls, options_, options_.max_attempts);
        check_token_response(what, request, response, found ? &*found : nullptr);
        return parse_token(response);
    }
    std::string form;
    const Request post = oauth_token_request(handle, wanted, found->identity_token, form);
    const Response response =
        perform_retrying(connection, post, tls, options_, options_.max_attempts);
    check_connected(what, post, response);
    if (response.status == 404 || response.status == 405) {
        return identity_token_by_get(connection, wanted, *found, response.status, tls);
    }
    check_oauth_response(response, *found);
    return parse_token(response);
}

// A token service without OAuth2 (GCR answered the POST with 404): the GET flow, with the
// identity token as the Basic password, as containerd and buildkit fall back too; the POST
// would have sent it to the same realm.
RegistryAuth::Token RegistryAuth::identity_token_by_get(Connection& connection,
                                                        const std::string& wanted,
                                                        const Credentials& found, long post_status,
                                                        const TlsSettings& tls) {
    const std::string what = fmt::format("token for {}", wanted);
    const std::string user =
        found.username.empty() ? std::string(k_identity_token_user) : found.username;
    const Request get = get_token_request(connection.handle.get(), wanted,
                                          util::base64_encode(user + ":" + found.identity_token));
    const Response response =
        perform_retrying(connection, get, tls, options_, options_.max_attempts);
    check_connected(what, get, response);
    if (response.status == 401 || response.status == 403) {
        throw bad_input("registry {}: the token service {} does not take OAuth2 POST "
                        "requests (HTTP {}), and the GET token request refused the identity "
                        "token from {} as a password ({} {}): this token service cannot log "
                        "in with an identity token alone; pass --creds USER:PASSWORD, or log "
                        "in again with a password (docker login {})",
                        registry_, realm_, post_status, found.source, response.status,
                        parse_registry_error(response.body).text, registry_);
    }
    check_token_status(response);
    return parse_token(response);
}

void RegistryAuth::check_connected(std::string_view what, const Request& request,
                                   const Response& response) const {
    if (response.code != CURLE_OK) {
        throw registry_tls_.connection_error(what, request.url, response, false);
    }
}

// OAuth2 answers an unknown or expired refresh token with 400 invalid_grant.
void RegistryAuth::check_oauth_response(const Response& response, const Credentials& found) const {
    if (response.status == 400 || response.status == 401 || response.status == 403) {
        throw bad_input("registry {}: the token service {} refused the identity token from "
                        "{} ({} {}); it may have expired or been revoked: log in again with "
                        "'docker login {}', or pass --creds USER:PASSWORD",
                        registry_, realm_, found.source, response.status,
                        parse_registry_error(response.body).text, registry_);
    }
    check_token_status(response);
}

// The token service's answer to the GET flow; its refusals are worded here, unauthorized()
// words the registry's.
void RegistryAuth::check_token_response(std::string_view what, const Request& request,
                                        const Response& response, const Credentials* found) const {
    check_connected(what, request, response);
    const std::string said = parse_registry_error(response.body).text;
    if (response.status == 401 || response.status == 403) {
        if (found) {
            throw bad_input("registry {}: the token service {} refused the credentials from "
                            "{} ({} {}); check them, or {}",
                            registry_, realm_, found->source, response.status, said, login_hint());
        }
        throw bad_input("registry {}: the token service {} requires credentials ({} {}); {}",
                        registry_, realm_, response.status, said, login_hint());
    }
    check_token_status(response);
}

void RegistryAuth::check_token_status(const Response& response) const {
    if (response.status != 200) {
        throw build_failed("registry {}: the token service {} answered HTTP {}: {}", registry_,
                           realm_, response.status, parse_registry_error(response.body).text);
    }
}

RegistryAuth::Token RegistryAuth::parse_token(const Response& response) const {
    const auto answer = parse_token_answer(response.body);
    if (!answer) {
        throw build_failed("registry {}: the token service {} answered without a token", registry_,
                           realm_);
    }
    std::chrono::seconds lifetime = k_default_token_lifetime;
    if (answer->expires_in) {
        // Clamped: a token service's number must not overflow the clock arithmetic below.
        lifetime = std::chrono::seconds(
            std::clamp<std::int64_t>(*answer->expires_in, 1, k_max_token_lifetime.count()));
    }
    const auto margin = lifetime > 2 * k_token_margin ? k_token_margin : std::chrono::seconds(0);
    return Token{answer->token, Clock::now() + lifetime - margin};
}

} // namespace edgeforge::oci

// Registry authentication: WWW-Authenticate, Basic, bearer tokens, OAuth2 and identity tokens.
#pragma once

// Internal to lib/oci/registry*.cpp: the public API is oci/registry.h.

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "base/error.h"
#include "oci/registry.h"
#include "oci/registry_tls.h"
#include "oci/registry_transport.h"

namespace edgeforge::oci {

// How requests to one registry are authorised: the scheme /v2/ asks for ("", "basic" or
// "bearer"), the credentials (looked up once, when first needed), and bearer tokens per scope
// until they expire. Not thread-safe: RegistryClient::State calls it with its mutex held.
class RegistryAuth {
  public:
    // `registry` as in references; `options` and `registry_tls` must outlive this.
    RegistryAuth(std::string registry, const RegistryOptions& options,
                 const RegistryTls& registry_tls);

    // Takes the scheme (and bearer realm) from a 401 response; false when there is nothing to
    // try (no challenge, or Basic without credentials).
    bool learn_challenge(const Response& response);
    // After a 401: whether asking again with fresh authorization can help.
    bool reauthorize(const Response& response, const std::string& scope);
    // The Authorization header value for `scope`, asking the token service (over `connection`,
    // with `tls`) when no unexpired bearer token is at hand; nullopt sends none.
    std::optional<std::string> authorization(Connection& connection, const std::string& scope,
                                             const TlsSettings& tls);
    // The error for a 401 or 403 of the registry: names where the credentials came from.
    Error unauthorized(std::string_view what, const Response& response);

  private:
    using Clock = std::chrono::steady_clock;
    struct Token {
        std::string value;
        Clock::time_point expires;
    };

    const std::optional<Credentials>& credentials();
    std::string login_hint() const;
    Request get_token_request(CURL* handle, const std::string& scopes,
                              const std::string& basic) const;
    Request oauth_token_request(CURL* handle, const std::string& scopes,
                                const std::string& refresh_token, std::string& form) const;
    Token fetch_token(Connection& connection, const std::string& scope, const TlsSettings& tls);
    void refuse_plain_http_realm(const Credentials& found) const;
    Token identity_token_by_get(Connection& connection, const std::string& wanted,
                                const Credentials& found, long post_status, const TlsSettings& tls);
    void check_connected(std::string_view what, const Request& request,
                         const Response& response) const;
    void check_oauth_response(const Response& response, const Credentials& found) const;
    void check_token_response(std::string_view what, const Request& request,
                              const Response& response, const Credentials* found) const;
    void check_token_status(const Response& response) const;
    Token parse_token(const Response& response) const;

    std::string registry_;
    const RegistryOptions& options_;
    const RegistryTls& registry_tls_;
    std::string scheme_; // "", "basic" or "bearer"
    std::string realm_;
    std::string service_;
    std::map<std::string, Token> tokens_;                // by the scope we asked for
    std::map<std::string, std::string> scope_overrides_; // scopes a challenge asked for instead
    bool credentials_loaded_ = false;
    std::optional<Credentials> credentials_;
};

} // namespace edgeforge::oci

// TLS with one registry: CA bundles, certs.d client certificates, and TLS failures explained.
#pragma once

// Internal to lib/oci/registry*.cpp: the public API is oci/registry.h.

#include <string>
#include <string_view>

#include "base/error.h"
#include "oci/registry.h"
#include "oci/registry_transport.h"

namespace edgeforge::oci {

// What TLS with one registry uses: the CA bundle (--ca-cert and the registry's certs.d CAs)
// and the certs.d client certificate, read when the client is made so that a broken file is an
// Error before any request. Insecure registries are RegistryOptions::is_insecure.
class RegistryTls {
  public:
    // `registry` as in references, `api_host` what is connected to; `options` must outlive this.
    RegistryTls(std::string registry, std::string api_host, const RegistryOptions& options);

    // Views of the PEM held here, for perform(); `verify` false skips certificate checks.
    TlsSettings settings(bool verify) const;

    // The error for a request that got no response: a TLS problem (an untrusted server, a
    // refused or missing client certificate) and what to do about it, else an unreachable
    // registry.
    Error connection_error(std::string_view what, const std::string& url, const Response& response,
                           bool insecure_allowed) const;

  private:
    std::string certs_d_hint() const;
    Error client_certificate_error(std::string_view what, const Response& response) const;

    std::string registry_;
    std::string api_host_;
    const RegistryOptions& options_;
    RegistryCertificates certificates_; // from certs.d
    std::string ca_bundle_;
    std::string client_cert_; // PEM, read once: a broken pair fails before any request
    std::string client_key_;
};

} // namespace edgeforge::oci

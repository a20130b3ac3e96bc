// TLS with one registry: CA bundles, certs.d, insecure registries, and TLS failures explained.
#include "oci/registry_tls.h"

#include <algorithm>
#include <cstdlib>
#include <system_error>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "oci/registry_credentials.h"
#include "util/curl.h"
#include "util/fs.h"
#include "util/strings.h"

namespace edgeforge::oci {
namespace stdfs = std::filesystem;

namespace {

bool is_tls_error(CURLcode code) {
    switch (code) {
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
        return true;
    default:
        return false;
    }
}

// The files --ca-cert names: a PEM file, or the *.crt and *.pem files of a directory.
std::vector<stdfs::path> ca_cert_files(const stdfs::path& extra) {
    std::error_code error;
    if (!stdfs::exists(extra, error)) {
        throw bad_input("--ca-cert: {} does not exist", extra.string());
    }
    if (!stdfs::is_directory(extra, error)) {
        return {extra};
    }
    std::vector<stdfs::path> files;
    for (const auto& entry : stdfs::directory_iterator(extra, error)) {
        const auto extension = entry.path().extension().string();
        if (entry.is_regular_file() && (extension == ".crt" || extension == ".pem")) {
            files.push_back(entry.path());
        }
    }
    std::sort(files.begin(), files.end());
    if (files.empty()) {
        throw bad_input("--ca-cert: the directory {} has no *.crt or *.pem files", extra.string());
    }
    return files;
}

// curl's default CA bundle (the system's), or nothing when there is none.
std::string system_ca_bundle() {
    std::string system_bundle = "/etc/ssl/certs/ca-certificates.crt";
    {
        const util::CurlEasy probe = util::new_curl_easy();
        char* default_path = nullptr;
        if (curl_easy_getinfo(probe.get(), CURLINFO_CAINFO, &default_path) == CURLE_OK &&
            default_path != nullptr) {
            system_bundle = default_path;
        }
    }
    try {
        return util::read_file(system_bundle) + "\n";
    } catch (const std::system_error&) {
        return {}; // no system bundle: trust only the given certificates
    }
}

// Whether `content` has a "-----BEGIN ...KIND-----" line: keys may be "PRIVATE KEY",
// "RSA PRIVATE KEY", "EC PRIVATE KEY".
bool holds_pem(std::string_view content, std::string_view kind) {
    constexpr std::string_view begin = "-----BEGIN ";
    for (auto at = content.find(begin); at != std::string_view::npos;
         at = content.find(begin, at + 1)) {
        const auto label = at + begin.size();
        const auto end = content.find("-----", label);
        if (end != std::string_view::npos && content.substr(label, end - label).ends_with(kind)) {
            return true;
        }
    }
    return false;
}

// A PEM file that must hold `kind` ("CERTIFICATE", "PRIVATE KEY"); `what` says where it was
// given ("--ca-cert", "registry HOST: certs.d").
std::string read_pem_file(const stdfs::path& file, std::string_view kind, std::string_view what) {
    std::string content;
    try {
        content = util::read_file(file);
    } catch (const std::system_error& failure) {
        throw bad_input("{}: cannot read {}: {}", what, file.string(), failure.code().message());
    }
    if (!holds_pem(content, kind)) {
        throw bad_input("{}: {} holds no PEM {}", what, file.string(), util::to_lower(kind));
    }
    return content;
}

// The system CA bundle plus --ca-cert's and the registry's certs.d CAs, for
// CURLOPT_CAINFO_BLOB: adding a CA must not stop the client from trusting public registries.
// Empty (curl's default) when there are none.
std::string build_ca_bundle(const stdfs::path& ca_cert, const RegistryCertificates& certificates,
                            std::string_view registry) {
    std::vector<std::pair<stdfs::path, std::string>> files; // the file, what gave it
    if (!ca_cert.empty()) {
        for (auto& file : ca_cert_files(ca_cert)) {
            files.emplace_back(std::move(file), "--ca-cert");
        }
    }
    for (const auto& file : certificates.ca_files) {
        files.emplace_back(file, fmt::format("registry {}: certs.d", registry));
    }
    if (files.empty()) {
        return {};
    }
    std::string bundle = system_ca_bundle();
    for (const auto& [file, what] : files) {
        bundle += read_pem_file(file, "CERTIFICATE", what) + "\n";
    }
    return bundle;
}

// The names of the regular files (or links to them) in a certs.d directory, sorted.
std::vector<std::string> certs_d_file_names(const stdfs::path& directory, std::string_view registry) {
    std::vector<std::string> names;
    std::error_code error;
    for (stdfs::directory_iterator it(directory, error), end; !error && it != end;
         it.increment(error)) {
        std::error_code type_error;
        if (it->is_regular_file(type_error)) {
            names.push_back(it->path().filename().string());
        }
    }
    if (error) {
        throw bad_input("registry {}: cannot read the certs.d directory {}: {}", registry,
                        directory.string(), error.message());
    }
    std::sort(names.begin(), names.end());
    return names;
}

} // namespace

bool RegistryOptions::is_insecure(std::string_view host) const {
    const std::string wanted = util::to_lower(host);
    const std::string without_port = wanted.substr(0, wanted.rfind(':'));
    return std::any_of(insecure_hosts.begin(), insecure_hosts.end(), [&](const std::string& entry) {
        const std::string listed = normalise_registry_key(entry);
        return listed == wanted ||
               (listed.find(':') == std::string::npos && listed == without_port);
    });
}

std::vector<stdfs::path> default_certs_d_roots() {
    std::vector<stdfs::path> roots;
    if (const char* config = std::getenv("XDG_CONFIG_HOME"); config != nullptr && *config != '\0') {
        roots.push_back(stdfs::path(config) / "containers" / "certs.d");
    } else if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
        roots.push_back(stdfs::path(home) / ".config" / "containers" / "certs.d");
    }
    roots.emplace_back("/etc/containers/certs.d");
    roots.emplace_back("/etc/docker/certs.d");
    return roots;
}

RegistryCertificates find_registry_certificates(std::string_view registry,
                                                const RegistryOptions& options) {
    RegistryCertificates found;
    const auto roots =
        options.certs_d_roots.empty() ? default_certs_d_roots() : options.certs_d_roots;
    for (const auto& root : roots) {
        std::error_code error; // an unreadable root is passed over, as containers/image does
        if (stdfs::is_directory(root / std::string(registry), error)) {
            found.directory = root / std::string(registry);
            break;
        }
    }
    if (found.directory.empty()) {
        return found;
    }
    const auto names = certs_d_file_names(found.directory, registry);
    const auto has = [&](const std::string& name) {
        return std::binary_search(names.begin(), names.end(), name);
    };
    std::vector<std::string> pairs;
    for (const auto& name : names) {
        const stdfs::path file = found.directory / name;
        const std::string stem = file.stem().string();
        if (file.extension() == ".crt") {
            found.ca_files.push_back(file);
        } else if (file.extension() == ".cert" && !has(stem + ".key")) {
            throw bad_input("registry {}: the client certificate {} has no key: {} is missing "
                            "(CA certificates take the extension .crt)",
                            registry, file.string(), (found.directory / (stem + ".key")).string());
        } else if (file.extension() == ".key" && !has(stem + ".cert")) {
            throw bad_input("registry {}: the client key {} has no certificate: {} is missing",
                            registry, file.string(), (found.directory / (stem + ".cert")).string());
        } else if (file.extension() == ".cert") {
            pairs.push_back(name);
            found.client_cert = file;
            found.client_key = found.directory / (stem + ".key");
        }
    }
    // containers/image offers every pair and lets Go's TLS choose; libcurl sends one.
    if (pairs.size() > 1) {
        throw bad_input("registry {}: the certs.d directory {} holds {} client certificates ({}); "
                        "edgeforge sends one: keep a single NAME.cert with its NAME.key",
                        registry, found.directory.string(), pairs.size(), util::join(pairs, ", "));
    }
    return found;
}

RegistryTls::RegistryTls(std::string registry, std::string api_host, const RegistryOptions& options)
    : registry_(std::move(registry)), api_host_(std::move(api_host)), options_(options) {
    certificates_ = find_registry_certificates(registry_, options_);
    ca_bundle_ = build_ca_bundle(options_.ca_cert, certificates_, registry_);
    if (!certificates_.client_cert.empty()) {
        const std::string what = fmt::format("registry {}: certs.d", registry_);
        client_cert_ = read_pem_file(certificates_.client_cert, "CERTIFICATE", what);
        client_key_ = read_pem_file(certificates_.client_key, "PRIVATE KEY", what);
    }
}

TlsSettings RegistryTls::settings(bool verify) const {
    TlsSettings settings;
    settings.ca_bundle = ca_bundle_;
    settings.client_cert = client_cert_;
    settings.client_key = client_key_;
    settings.verify = verify;
    return settings;
}

// Where a client certificate for this registry goes: ROOT/HOST[:PORT]/ of each root.
std::string RegistryTls::certs_d_hint() const {
    const auto roots =
        options_.certs_d_roots.empty() ? default_certs_d_roots() : options_.certs_d_roots;
    std::vector<std::string> directories;
    for (const auto& root : roots) {
        directories.push_back((root / registry_).string() + "/");
    }
    return fmt::format("put the client certificate and its key (PEM) as client.cert and "
                       "client.key in {}, or pass --certs-dir DIR with them in DIR/{}/",
                       util::join(directories, " or "), registry_);
}

// The server refused our client certificate, or wanted one and got none.
Error RegistryTls::client_certificate_error(std::string_view what, const Response& response) const {
    const std::string said = clean_message(response.curl_error);
    if (certificates_.client_cert.empty()) {
        const std::string where =
            certificates_.directory.empty()
                ? certs_d_hint()
                : fmt::format("the certs.d directory {} has no NAME.cert with its NAME.key: "
                              "put them there",
                              certificates_.directory.string());
        return bad_input("registry {}: {}: the registry requires a TLS client certificate "
                         "and none is configured for {} ({}); {}",
                         registry_, what, registry_, said, where);
    }
    return bad_input("registry {}: {}: the registry refused the client certificate {} ({}); "
                     "check that it is signed by a CA the registry trusts for clients, has "
                     "not expired, and allows client authentication",
                     registry_, what, certificates_.client_cert.string(), said);
}

Error RegistryTls::connection_error(std::string_view what, const std::string& url,
                                    const Response& response, bool insecure_allowed) const {
    const std::string attempts =
        response.attempts > 1 ? fmt::format(" (after {} attempts)", response.attempts) : "";
    if (client_certificate_refused(response)) {
        return client_certificate_error(what, response);
    }
    if (!response.timed_out.empty()) {
        return build_failed("registry {}: {}: {}{}; the registry or the network is stalled or "
                            "too slow (raise the limit if the link is only slow)",
                            registry_, what, response.timed_out, attempts);
    }
    if (response.body_overflow) {
        return build_failed("registry {}: {}: the answer is larger than {}, more than such an "
                            "answer ever needs; nothing was used",
                            registry_, what, util::format_bytes(response.body_limit));
    }
    if (response.code == CURLE_TOO_MANY_REDIRECTS) {
        return build_failed("registry {}: {}: {} answered with more than {} redirects (a "
                            "redirect loop?); nothing was downloaded",
                            registry_, what, clean_message(url), k_max_redirects);
    }
    if (response.code == CURLE_SSL_CERTPROBLEM && !certificates_.client_cert.empty()) {
        return bad_input("registry {}: {}: the client certificate {} with the key {} cannot "
                         "be used: {}; check that the key belongs to the certificate and "
                         "has no passphrase",
                         registry_, what, certificates_.client_cert.string(),
                         certificates_.client_key.string(), clean_message(response.curl_error));
    }
    if (response.code == CURLE_PEER_FAILED_VERIFICATION ||
        response.code == CURLE_SSL_CACERT_BADFILE) {
        return bad_input("registry {}: {}: the TLS certificate of {} is not trusted: {}; pass "
                         "--ca-cert FILE with the CA that signed it, or put the CA in a "
                         "certs.d directory as {}/ca.crt (--certs-dir){}",
                         registry_, what, api_host_, clean_message(response.curl_error), registry_,
                         insecure_allowed ? ""
                                          : fmt::format(" (or --insecure-registry {} to "
                                                        "skip verification)",
                                                        registry_));
    }
    if (is_tls_error(response.code)) {
        return bad_input("registry {}: {}: TLS with {} failed: {}; if the registry serves "
                         "plain HTTP, pass --insecure-registry {}",
                         registry_, what, url, clean_message(response.curl_error), registry_);
    }
    return build_failed("registry {} is unreachable: {}: {}{}; check the host name and port, "
                        "the network, and HTTPS_PROXY/NO_PROXY",
                        registry_, what, clean_message(response.curl_error), attempts);
}

} // namespace edgeforge::oci

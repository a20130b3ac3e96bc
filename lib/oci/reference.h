// Image references in the containers-transports syntax users know from skopeo.
#pragma once

#include <string>
#include <string_view>

namespace edgeforge::oci {

enum class Transport {
    oci_layout,     // oci:DIR[:TAG]            an OCI image layout directory
    oci_archive,    // oci-archive:FILE[:TAG]   a tar of an OCI image layout
    docker_archive, // docker-archive:FILE      `docker save` output
    directory,      // dir:PATH                 a plain root filesystem directory
    tarball,        // tar:FILE                 a root filesystem tarball (plain/gzip/zstd/xz)
    registry,       // docker://HOST/REPO:TAG|@DIGEST, or the bare form HOST/REPO:TAG
};

std::string_view transport_prefix(Transport transport);

struct ImageReference {
    Transport transport = Transport::registry;
    std::string path;       // local transports: the directory or file
    std::string tag;        // oci/oci-archive tag, or the registry tag
    std::string registry;   // registry transport: "docker.io", "localhost:5000"
    std::string repository; // registry transport: "library/alpine"
    std::string digest;     // registry transport: "sha256:<hex>" when pinned
    bool tag_implied = false; // registry transport: no tag was written, "latest" was assumed

    // No tag or digest was written: "oci:DIR", "docker://HOST/REPO".
    bool unversioned() const { return (tag.empty() || tag_implied) && digest.empty(); }

    bool is_registry() const { return transport == Transport::registry; }
    // The canonical spelling, e.g. "docker://docker.io/library/alpine:3.19".
    std::string str() const;
    // The host to talk to for the registry API (docker.io is served by registry-1.docker.io).
    std::string api_host() const;
};

// Parses a reference; throws edgeforge::Error (bad input) whose message names the reference,
// what is wrong with it and the accepted forms.
ImageReference parse_reference(std::string_view text);

// The accepted forms, one per line, for help texts and error messages.
std::string_view reference_forms_help();

} // namespace edgeforge::oci

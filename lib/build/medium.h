// What an installer medium carries besides its boot chain and root filesystem: the content
// bundles, the cluster configuration and the edge custom config, where CanvOS puts them and the
// agent on the device looks for them. Shared by the grub live ISO and the UKI installer ISO.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/console.h"
#include "build/plan.h"
#include "formats/iso_writer.h"
#include "util/digest.h"

namespace edgeforge {

// Bytes the payload puts on a medium (a split bundle counts all its parts).
std::uint64_t medium_payload_bytes(const IsoPlan& plan);

// The payload's files:
//   /opt/spectrocloud/content/<bundle> (+ its .sha256 and .sig), split into parts when larger
//   than plan.split_size (else CanvOS's 3 GB NAME_partNN parts) with a parts index; a bundle
//   split already by `content build --split-size` goes on as its parts and index,
//   /opt/spectrocloud/clusterconfig/<cluster config>,
//   /.edge_custom_config.yaml.
// Nothing is copied: the entries point at the host files (or slices of them).
std::vector<formats::IsoFileEntry> medium_payload_files(const IsoPlan& plan,
                                                        const Console& console);

// Adds what identifies the payload and the ISO overlay to `hasher` (bundles by name and size:
// hashing gigabytes only to seed a GPT GUID is not worth it).
void hash_medium_payload(const IsoPlan& plan, util::Sha256& hasher);

} // namespace edgeforge

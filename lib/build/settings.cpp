// The one table of build settings: config key, CLI flag, environment variable, legacy file
// names, type, allowed values, default and help all come from here.
#include "build/settings.h"

#include "build/outputs.h"
#include "fs/squashfs.h"

#include <algorithm>

namespace edgeforge {
namespace {

using T = SettingType;

// Precedence and syntax are documented in README.md ("Configuration"). Adding a setting means
// adding a row here; the CLI flags, environment variables, legacy-file names, `config show`
// and validation all follow from the row.
const std::vector<Setting>& table() {
    static const std::vector<Setting> rows = {
        {.key = "arch",
         .flag = "arch",
         .env = "EDGEFORGE_ARCH",
         .arg_name = "ARCH",
         .type = T::enumeration,
         .scope = k_scope_global,
         .default_value = "amd64",
         .allowed = {"amd64", "arm64"},
         .help = "Target architecture: amd64 (x86_64) or arm64 (aarch64)"},
        {.key = "arches",
         .flag = "arches",
         .env = "EDGEFORGE_ARCHES",
         .type = T::enumeration_list,
         .scope = k_scope_iso | k_scope_disk | k_scope_iso_disk_image,
         .allowed = {"amd64", "arm64"},
         .help = "Build the installer outputs and content bundles for each of these arches, "
                 "each into <output_dir>/<arch>/ (`build all`, `build rootfs`, `plan`; other "
                 "builds take one with --arch); provider images default to them"},
        {.key = "output_dir",
         .flag = "output-dir",
         .env = "EDGEFORGE_OUTPUT_DIR",
         .type = T::output_path,
         .scope = k_scope_global,
         .default_value = "build",
         .help = "Directory that receives the artifacts"},
        {.key = "cache_dir",
         .flag = "cache-dir",
         .env = "EDGEFORGE_CACHE_DIR",
         .type = T::output_path,
         .scope = k_scope_global,
         .default_value = "${XDG_CACHE_HOME:-${HOME}/.cache}/edgeforge",
         .help = "Cache for image blobs and reusable build steps"},
        {.key = "unpacked_layer_cache",
         .flag = "unpacked-layer-cache",
         .env = "EDGEFORGE_UNPACKED_LAYER_CACHE",
         .type = T::boolean,
         .scope = k_scope_global,
         .default_value = "true",
         .help = "Keep gzip layers uncompressed in the cache (<cache_dir>/layers, about 2.5x the "
                 "layers' size) so later builds on the same base merge them without inflating "
                 "(false: inflate every time, keep nothing)"},
        {.key = "block_cache_size",
         .flag = "block-cache-size",
         .env = "EDGEFORGE_BLOCK_CACHE_SIZE",
         .type = T::size,
         .scope = k_scope_global,
         .default_value = "8G",
         .help = "Room for compressed squashfs blocks in the cache (<cache_dir>/blocks): a rebuild "
                 "copies the blocks of unchanged files instead of compressing them again, with "
                 "byte-identical output; least recently used blocks go first (0: no block cache)"},
        {.key = "cache.remote",
         .flag = "cache-remote",
         .env = "EDGEFORGE_CACHE_REMOTE",
         .type = T::image,
         .scope = k_scope_global,
         .help = "A build cache shared by every machine: an OCI repository "
                 "(docker://HOST/REPO, or oci:DIR on a shared filesystem) that finished steps "
                 "(the root filesystem) are pulled from before they are computed and pushed to "
                 "after; sets both cache.from and cache.to"},
        {.key = "cache.from",
         .flag = "cache-from",
         .env = "EDGEFORGE_CACHE_FROM",
         .type = T::image,
         .scope = k_scope_global,
         .help = "Pull finished build steps from this OCI repository (docker://HOST/REPO or "
                 "oci:DIR) before computing them; every pulled step is verified"},
        {.key = "cache.to",
         .flag = "cache-to",
         .env = "EDGEFORGE_CACHE_TO",
         .type = T::image,
         .scope = k_scope_global,
         .help = "Push each build step computed here to this OCI repository (docker://HOST/REPO "
                 "or oci:DIR), for other machines' builds"},
        {.key = "cache.push_private",
         .flag = "cache-push-private",
         .env = "EDGEFORGE_CACHE_PUSH_PRIVATE",
         .type = T::boolean,
         .scope = k_scope_global,
         .default_value = "false",
         .help = "Also push steps holding user-data, keys or credentials to cache.to (everyone "
                 "who can pull from it can read them)"},
        {.key = "registry.ca_cert",
         .flag = "ca-cert",
         .env = "EDGEFORGE_CA_CERT",
         .type = T::path,
         .scope = k_scope_global,
         .help = "Extra CA certificates for registries: a PEM file or a directory of *.crt/*.pem "
                 "(trusted in addition to the system CAs)"},
        {.key = "registry.certs_dir",
         .flag = "certs-dir",
         .env = "EDGEFORGE_CERTS_DIR",
         .type = T::path,
         .scope = k_scope_global,
         .help = "A certs.d directory (HOST[:PORT]/*.crt: CAs for that registry; NAME.cert + "
                 "NAME.key: its TLS client certificate) read instead of "
                 "~/.config/containers/certs.d, /etc/containers/certs.d and /etc/docker/certs.d"},
        {.key = "registry.insecure",
         .flag = "insecure-registry",
         .env = "EDGEFORGE_INSECURE_REGISTRIES",
         .type = T::string,
         .scope = k_scope_global,
         .help = "Registries (HOST[:PORT], comma-separated) that may be used over plain HTTP or "
                 "without TLS verification"},
        {.key = "registry.timeout",
         .flag = "registry-timeout",
         .env = "EDGEFORGE_REGISTRY_TIMEOUT",
         .type = T::integer,
         .scope = k_scope_global,
         .default_value = "60",
         .help = "Seconds a registry or token service has for each answer but blobs (manifests, "
                 "tokens), retries included; a slower answer fails instead of hanging",
         .minimum = 1,
         .maximum = 86400},
        {.key = "registry.stall_timeout",
         .flag = "registry-stall-timeout",
         .env = "EDGEFORGE_REGISTRY_STALL_TIMEOUT",
         .type = T::integer,
         .scope = k_scope_global,
         .default_value = "30",
         .help = "Seconds a registry transfer (blob downloads too) may go at under 1 KiB/s "
                 "before it is abandoned and retried (blobs resume); blobs have no overall "
                 "deadline, so a slow but moving link always finishes",
         .minimum = 1,
         .maximum = 3600},
        {.key = "registry.creds",
         .flag = "creds",
         .env = "EDGEFORGE_CREDS",
         .type = T::credentials,
         .scope = k_scope_global,
         .help = "Registry credentials USER:PASSWORD for every registry (else REGISTRY_AUTH_FILE, "
                 "~/.docker/config.json and its credential helpers); never shown or cached"},
        {.key = "source_date_epoch",
         .flag = "source-date-epoch",
         .env = "SOURCE_DATE_EPOCH",
         .type = T::integer,
         .scope = k_scope_global,
         .default_value = "",
         .help = "Timestamp (seconds since 1970) used for every date in the outputs, for "
                 "byte-identical rebuilds",
         .minimum = 0,
         .maximum = 253402300799},

        {.key = "name",
         .flag = "name",
         .env = "EDGEFORGE_NAME",
         .arg_name = "ISO_NAME",
         .installer_env_name = "ISO_IMAGE",
         .type = T::name,
         .scope = k_scope_iso | k_scope_disk,
         .default_value = "palette-edge-installer",
         .help = "Artifact base name: build/<name>.iso, build/<name>.raw, ..."},
        {.key = "outputs",
         .flag = "outputs",
         .env = "EDGEFORGE_OUTPUTS",
         .type = T::enumeration_list,
         .scope = 0,
         .default_value = "iso",
         .allowed = build_all_output_names(),
         .help = "Artifacts `edgeforge build all` produces"},
        {.key = "base.image",
         .flag = "base",
         .env = "EDGEFORGE_BASE_IMAGE",
         .arg_name = "BASE_IMAGE",
         .type = T::image,
         .scope = k_scope_all_builds,
         .help = "Kairos-style base OS image (oci:DIR, docker://REF, ...)"},
        {.key = "agent.images",
         .flag = "agent",
         .env = "EDGEFORGE_AGENT_IMAGES",
         .type = T::image_list,
         .scope = k_scope_all_builds,
         .help = "Agent image(s) layered over the base, in order"},
        {.key = "agent.version",
         .flag = "agent-version",
         .env = "EDGEFORGE_AGENT_VERSION",
         .arg_name = "PE_VERSION",
         .installer_env_name = "INSTALLER_VERSION",
         .type = T::name,
         .scope = k_scope_all_builds,
         .default_value = "latest",
         .help = "Agent/installer version: the tag of agent images given without one"},
        {.key = "user_data",
         .flag = "user-data",
         .env = "EDGEFORGE_USER_DATA",
         .installer_env_name = "USER_DATA_FILE",
         .type = T::path,
         .scope = k_scope_iso | k_scope_disk,
         .default_value = "user-data",
         .help = "#cloud-config user-data embedded in the media"},
        {.key = "overlays.rootfs",
         .flag = "overlay",
         .env = "EDGEFORGE_OVERLAY",
         .type = T::path,
         .scope = k_scope_all_builds,
         .default_value = "overlays/files",
         .help = "Directory merged into the OS root filesystem"},
        {.key = "overlays.iso",
         .flag = "iso-overlay",
         .env = "EDGEFORGE_ISO_OVERLAY",
         .type = T::path,
         .scope = k_scope_iso,
         .default_value = "overlays/files-iso",
         .help = "Directory placed at the root of the ISO"},
        {.key = "content.bundles",
         .flag = "content",
         .env = "EDGEFORGE_CONTENT_BUNDLES",
         .type = T::path_list,
         .scope = k_scope_iso | k_scope_disk,
         .help = "Content bundles (.tar.zst) placed under /opt/spectrocloud/content/ on the ISO, "
                 "in bundle-content/ on disk images' COS_CONTENT"},
        {.key = "cluster_config",
         .flag = "cluster-config",
         .env = "EDGEFORGE_CLUSTER_CONFIG",
         .arg_name = "CLUSTERCONFIG",
         .type = T::path,
         .scope = k_scope_iso | k_scope_disk,
         .help = "Cluster configuration archive for locally managed sites (on disk images: "
                 "spc-config/ on COS_CONTENT)"},
        {.key = "local_ui",
         .flag = "local-ui",
         .env = "EDGEFORGE_LOCAL_UI",
         .type = T::path,
         .scope = k_scope_iso | k_scope_disk,
         .help = "Local UI archive (tar) unpacked into /opt/spectrocloud/ of the installer root "
                 "filesystem; default: local-ui.tar in the project directory when it is there, as "
                 "CanvOS does"},
        {.key = "edge_custom_config",
         .flag = "edge-custom-config",
         .env = "EDGEFORGE_EDGE_CUSTOM_CONFIG",
         .arg_name = "EDGE_CUSTOM_CONFIG",
         .type = T::path,
         .scope = k_scope_iso | k_scope_disk | k_scope_provider,
         .help = "Edge custom config (the content-signing public key, ...): /.edge_custom_config"
                 ".yaml on the ISO, /oem/.edge_custom_config.yaml in provider images, "
                 "edge-config/.edge_custom_config.yaml on disk images' COS_CONTENT"},
        {.key = "sites",
         .flag = "sites",
         .env = "EDGEFORGE_SITES",
         .type = T::path,
         .scope = k_scope_iso,
         .help = "Directory of per-site files (NAME.yaml, merged over the user-data): one "
                 "installer per site, build/<name>-<NAME>.iso, and build/sites.json"},
        {.key = "installer.image_name",
         .flag = "installer-image",
         .env = "EDGEFORGE_INSTALLER_IMAGE",
         .installer_env_name = "IMAGE_NAME",
         .type = T::image,
         .scope = k_scope_iso,
         .help = "Also publish the installer root filesystem as this OCI image"},

        {.key = "os.distribution",
         .flag = "os-distribution",
         .env = "EDGEFORGE_OS_DISTRIBUTION",
         .arg_name = "OS_DISTRIBUTION",
         .type = T::name,
         .scope = k_scope_provider,
         .help = "OS distribution of the base (ubuntu, opensuse-leap, ...), for tags and metadata"},
        {.key = "os.version",
         .flag = "os-version",
         .env = "EDGEFORGE_OS_VERSION",
         .arg_name = "OS_VERSION",
         .type = T::name,
         .scope = k_scope_provider,
         .help = "OS version of the base, for tags and metadata"},
        {.key = "kubernetes.distribution",
         .flag = "k8s-distribution",
         .env = "EDGEFORGE_K8S_DISTRIBUTION",
         .arg_name = "K8S_DISTRIBUTION",
         .type = T::enumeration,
         .scope = k_scope_provider,
         .allowed = {"k3s", "rke2", "kubeadm", "kubeadm-fips", "canonical", "nodeadm"},
         .help = "Kubernetes distribution baked into provider images"},
        {.key = "kubernetes.versions",
         .flag = "k8s-version",
         .env = "EDGEFORGE_K8S_VERSIONS",
         .arg_name = "K8S_VERSION",
         .type = T::version_list,
         .scope = k_scope_provider,
         .help = "Kubernetes version(s); several build a matrix of provider images"},
        {.key = "kubernetes.artifacts",
         .flag = "k8s-artifact",
         .env = "EDGEFORGE_K8S_ARTIFACTS",
         .type = T::image_list,
         .scope = k_scope_provider,
         .help = "The Kubernetes layer(s) laid over the base: images, tar: or dir: artifacts; "
                 "{distribution}, {version} and {arch} are replaced for each image built"},
        {.key = "kubernetes.versions_file",
         .flag = "k8s-versions-file",
         .env = "EDGEFORGE_K8S_VERSIONS_FILE",
         .type = T::path,
         .scope = k_scope_provider,
         .help = "File listing the Kubernetes versions that may be built"},
        {.key = "provider.registry",
         .flag = "registry",
         .env = "EDGEFORGE_REGISTRY",
         .arg_name = "IMAGE_REGISTRY",
         .type = T::string,
         .scope = k_scope_provider | k_scope_iso_disk_image,
         .help = "Registry for provider images and the iso-disk-image (host[:port][/namespace])"},
        {.key = "provider.repository",
         .flag = "repository",
         .env = "EDGEFORGE_REPOSITORY",
         .arg_name = "IMAGE_REPO",
         .type = T::string,
         .scope = k_scope_provider | k_scope_iso_disk_image,
         .help = "Repository for provider images (REGISTRY/REPO:TAG) and the iso-disk-image "
                 "(REGISTRY/REPO/NAME:TAG)"},
        {.key = "provider.custom_tag",
         .flag = "custom-tag",
         .env = "EDGEFORGE_CUSTOM_TAG",
         .arg_name = "CUSTOM_TAG",
         .type = T::name,
         .scope = k_scope_provider | k_scope_iso_disk_image,
         .help = "Suffix appended to provider image tags and the iso-disk-image tag"},
        {.key = "provider.arches",
         .flag = "platforms",
         .env = "EDGEFORGE_PROVIDER_ARCHES",
         .type = T::enumeration_list,
         .scope = k_scope_provider,
         .allowed = {"amd64", "arm64"},
         .help = "Architectures of the provider images (default: arches, else --arch); with two, each tag "
                 "is a multi-arch index. {arch} in image references is replaced per arch"},
        {.key = "provider.source",
         .flag = "source-url",
         .env = "EDGEFORGE_SOURCE_URL",
         .type = T::url,
         .scope = k_scope_provider,
         .help = "URL of the project's source, recorded as org.opencontainers.image.source"},
        {.key = "fips",
         .flag = "fips",
         .env = "EDGEFORGE_FIPS",
         .arg_name = "FIPS_ENABLED",
         .type = T::boolean,
         .scope = k_scope_provider,
         .default_value = "false",
         .help = "Build FIPS-enabled images"},
        {.key = "proxy.http",
         .flag = "http-proxy",
         .env = "EDGEFORGE_HTTP_PROXY",
         .arg_name = "HTTP_PROXY",
         .type = T::url,
         .scope = k_scope_provider,
         .help = "HTTP proxy configured in the built OS"},
        {.key = "proxy.https",
         .flag = "https-proxy",
         .env = "EDGEFORGE_HTTPS_PROXY",
         .arg_name = "HTTPS_PROXY",
         .type = T::url,
         .scope = k_scope_provider,
         .help = "HTTPS proxy configured in the built OS"},
        {.key = "proxy.no_proxy",
         .flag = "no-proxy",
         .env = "EDGEFORGE_NO_PROXY",
         .arg_name = "NO_PROXY",
         .type = T::string,
         .scope = k_scope_provider,
         .help = "Hosts and networks that bypass the proxy (comma-separated)"},

        {.key = "iso.extra_cmdline",
         .flag = "extra-cmdline",
         .env = "EDGEFORGE_EXTRA_CMDLINE",
         .type = T::string,
         .scope = k_scope_iso | k_scope_disk,
         .help = "Extra kernel command line for the boot entries (live ISO, disk recovery)"},
        {.key = "iso.interactive_default",
         .flag = "interactive-default",
         .env = "EDGEFORGE_INTERACTIVE_DEFAULT",
         .arg_name = "FORCE_INTERACTIVE_INSTALL",
         .type = T::boolean,
         .scope = k_scope_iso,
         .default_value = "false",
         .help = "Make the interactive install the default boot entry (in edgeforge's menu, and "
                 "{{DEFAULT_ENTRY}} = 2 in a grub.cfg of the ISO overlay, as CanvOS renders it)"},
        {.key = "uki.secure_boot_enroll",
         .flag = "secure-boot-enroll",
         .env = "EDGEFORGE_SECURE_BOOT_ENROLL",
         .type = T::enumeration,
         .scope = k_scope_iso | k_scope_provider,
         .default_value = "manual",
         .allowed = {"off", "manual", "force"},
         .help = "build uki / build iso --uki: what systemd-boot does with the keys on the medium when the firmware "
                 "is in Setup Mode (loader.conf secure-boot-enroll): off, manual (a menu entry "
                 "enrols them) or force (enrolled on first boot, then the machine resets into "
                 "Secure Boot with your keys)"},
        {.key = "iso.uki",
         .flag = "uki",
         .env = "EDGEFORGE_UKI",
         .arg_name = "IS_UKI",
         .type = T::boolean,
         .scope = k_scope_iso | k_scope_iso_disk_image | k_scope_provider,
         .default_value = "false",
         .help = "build iso: the Trusted Boot installer ISO instead of the grub live ISO: EFI "
                 "only, systemd-boot and signed UKIs (the OS in each), your Secure Boot keys to "
                 "enrol, the user-data, overlay, content and cluster config on the medium (keys "
                 "from `edgeforge keys generate`, or --keys); build provider: each image also "
                 "carries the signed UKI of its root filesystem under /trusted-boot, for "
                 "Trusted Boot upgrades"},
        {.key = "uki.entries",
         .flag = "uki-entries",
         .env = "EDGEFORGE_UKI_ENTRIES",
         .type = T::enumeration_list,
         .scope = k_scope_iso,
         .default_value = "install,interactive-install,recovery",
         .allowed = {"install", "interactive-install", "recovery"},
         .help = "build uki / build iso --uki: the boot entries, one signed UKI each; every UKI "
                 "carries the whole OS, so the medium grows by the OS's size per entry"},
        {.key = "uki.branding",
         .flag = "branding",
         .env = "EDGEFORGE_BRANDING",
         .arg_name = "BRANDING",
         .type = T::string,
         .scope = k_scope_iso | k_scope_provider,
         .help = "build uki / build iso --uki / build provider --uki: the boot menu title of the install entry (the "
                 "others add '(interactive install)', '(recovery)'); default 'Install NAME' "
                 "(provider images: the tag)"},
        {.key = "uki.max_efi_size",
         .flag = "max-efi-size",
         .env = "EDGEFORGE_MAX_EFI_SIZE",
         .type = T::size,
         .scope = k_scope_iso | k_scope_provider,
         .default_value = "2G",
         .help = "build uki / build iso --uki / build provider --uki: the largest UKI your firmware loads (firmware "
                 "reads the whole file into memory; CanvOS's efi-size-check medium measures it); "
                 "a larger UKI fails the build before it is written",
         .minimum = 1 << 20,
         .maximum = (4LL << 30) - 1},
        {.key = "iso.debug",
         .flag = "debug-boot",
         .env = "EDGEFORGE_DEBUG_BOOT",
         .arg_name = "DEBUG",
         .type = T::boolean,
         .scope = k_scope_iso,
         .default_value = "false",
         .help = "Add CanvOS's debug options (rd.immucore.debug console=tty0 rd.debug) to the "
                 "installer's kernel command line (in a grub.cfg of the ISO overlay: to each line "
                 "with rd.immucore.sysrootwait)"},
        {.key = "iso.split_size",
         .flag = "split-size",
         .env = "EDGEFORGE_SPLIT_SIZE",
         .type = T::size,
         .scope = k_scope_iso,
         .help = "Split content bundles on the ISO into parts of at most this size",
         .minimum = 1 << 20,
         .maximum = 0},
        {.key = "content.manifests",
         .flag = "content-manifest",
         .env = "EDGEFORGE_CONTENT_MANIFESTS",
         .type = T::path_list,
         .scope = 0,
         .help = "What `build all` packs when outputs lists content: bundle manifests (.yaml, "
                 ".yml, .json) or images files, one content bundle each, named after the file "
                 "(build/content-NAME/)"},
        {.key = "content.level",
         .flag = "level",
         .env = "EDGEFORGE_CONTENT_LEVEL",
         .type = T::integer,
         .scope = k_scope_content,
         .default_value = "3",
         .help = "zstd compression level of content bundles",
         .minimum = 1,
         .maximum = 19},
        {.key = "content.threads",
         .flag = "threads",
         .env = "EDGEFORGE_CONTENT_THREADS",
         .type = T::integer,
         .scope = k_scope_content,
         .default_value = "0",
         .help = "zstd worker threads for content bundles (0: one per CPU)",
         .minimum = 0,
         .maximum = 1024},
        {.key = "content.split_size",
         .flag = "split-size",
         .env = "EDGEFORGE_CONTENT_SPLIT_SIZE",
         .type = T::size,
         .scope = k_scope_content,
         .help = "Split content bundle archives into parts of at most this size (.part-NNN + "
                 ".parts.json)",
         .minimum = 1024,
         .maximum = 0},
        {.key = "content.sign",
         .flag = "sign",
         .env = "EDGEFORGE_CONTENT_SIGNING_KEY",
         .type = T::path,
         .scope = k_scope_content,
         .help = "Sign content bundles with this ECDSA P-256 or Ed25519 private key (KEY.pem; "
                 "writes .sig)"},
        {.key = "content.all_platforms",
         .flag = "all-platforms",
         .env = "EDGEFORGE_CONTENT_ALL_PLATFORMS",
         .type = T::boolean,
         .scope = k_scope_content,
         .default_value = "false",
         .help = "Keep every platform of multi-platform images in content bundles (default: "
                 "--arch only)"},
        {.key = "squashfs.compression",
         .flag = "compression",
         .env = "EDGEFORGE_COMPRESSION",
         .type = T::enumeration,
         .scope = k_scope_iso | k_scope_disk,
         .default_value = "zstd",
         .allowed = fs::squashfs_compressor_names(),
         .help = "Root filesystem squashfs compressor"},
        {.key = "squashfs.level",
         .flag = "compression-level",
         .env = "EDGEFORGE_COMPRESSION_LEVEL",
         .type = T::integer,
         .scope = k_scope_iso | k_scope_disk,
         .default_value = "0",
         .help = "Compression level; 0 picks the default (zstd 10, which is within 0.3% of "
                 "level 15's size at a third of the time; gzip 9; xz 6). zstd 1-22, gzip 1-9, "
                 "xz 1-9",
         .minimum = 0,
         .maximum = 22},
        {.key = "squashfs.block_size",
         .flag = "block-size",
         .env = "EDGEFORGE_BLOCK_SIZE",
         .type = T::size,
         .scope = k_scope_iso | k_scope_disk,
         .default_value = "1M",
         .help = "Squashfs block size, a power of two from 4K to 1M",
         .minimum = 4096,
         .maximum = 1 << 20,
         .power_of_two = true},
        {.key = "disk.size",
         .flag = "disk-size",
         .env = "EDGEFORGE_DISK_SIZE",
         .type = T::size,
         .scope = k_scope_disk,
         .help = "Disk image size (default: the smallest that fits)",
         .minimum = 1 << 20},
        {.key = "disk.bios",
         .flag = "bios",
         .env = "EDGEFORGE_DISK_BIOS",
         .type = T::boolean,
         .scope = k_scope_disk,
         .default_value = "false",
         .help = "Make amd64 disk images bootable on legacy BIOS too"},
        {.key = "disk.state_size",
         .flag = "state-size",
         .env = "EDGEFORGE_DISK_STATE_SIZE",
         .type = T::size,
         .scope = k_scope_disk,
         .default_value = "0",
         .help = "Size of an empty ext4 COS_STATE partition on the disk (0: none, Kairos makes "
                 "it on first boot)"},
        {.key = "disk.persistent_size",
         .flag = "persistent-size",
         .env = "EDGEFORGE_DISK_PERSISTENT_SIZE",
         .type = T::size,
         .scope = k_scope_disk,
         .default_value = "0",
         .help = "Size of an empty ext4 COS_PERSISTENT partition on the disk (0: none)"},
        {.key = "disk.content_partition",
         .flag = "content-partition",
         .env = "EDGEFORGE_DISK_CONTENT_PARTITION",
         .type = T::enumeration,
         .scope = k_scope_disk,
         .default_value = "auto",
         .allowed = {"auto", "true", "false"},
         .help = "An ext4 COS_CONTENT partition on the disk holding the content bundles, cluster "
                 "config and edge custom config, as CanvOS's cloud images have: auto (as CanvOS: "
                 "when there is any of them), true (always; refused with none), false (never)"},
        {.key = "ova.cpus",
         .flag = "ova-cpus",
         .env = "EDGEFORGE_OVA_CPUS",
         .type = T::integer,
         .scope = k_scope_disk,
         .default_value = "2",
         .help = "Virtual CPUs in the OVA descriptor",
         .minimum = 1,
         .maximum = 768},
        {.key = "ova.memory",
         .flag = "ova-memory",
         .env = "EDGEFORGE_OVA_MEMORY",
         .type = T::size,
         .scope = k_scope_disk,
         .default_value = "8G",
         .help = "Memory in the OVA descriptor",
         .minimum = 1 << 20},
        {.key = "ova.hardware_version",
         .flag = "ova-hardware-version",
         .env = "EDGEFORGE_OVA_HARDWARE_VERSION",
         .type = T::integer,
         .scope = k_scope_disk,
         .default_value = "14",
         .help = "VMware virtual hardware version (vmx-NN)",
         .minimum = 7,
         .maximum = 21},
        {.key = "ami.name",
         .flag = "ami-name",
         .env = "EDGEFORGE_AMI_NAME",
         .type = T::string,
         .scope = k_scope_disk,
         .help = "AMI name (default: the artifact name)"},
        {.key = "ami.description",
         .flag = "ami-description",
         .env = "EDGEFORGE_AMI_DESCRIPTION",
         .type = T::string,
         .scope = k_scope_disk,
         .help = "AMI description"},
        {.key = "ami.region",
         .flag = "ami-region",
         .env = "EDGEFORGE_AMI_REGION",
         .arg_name = "REGION",
         .type = T::name,
         .scope = k_scope_disk,
         .help = "AWS region to upload to (else AWS_REGION)"},
    };
    return rows;
}

} // namespace

std::span<const Setting> settings_table() {
    return table();
}

const Setting* find_setting(std::string_view key) {
    const auto& rows = table();
    const auto it =
        std::find_if(rows.begin(), rows.end(), [&](const Setting& row) { return row.key == key; });
    return it == rows.end() ? nullptr : &*it;
}

const Setting* find_setting_by_legacy_name(std::string_view name, bool installer_env) {
    for (const auto& row : table()) {
        const auto legacy = installer_env ? row.installer_env_name : row.arg_name;
        if (!legacy.empty() && legacy == name) {
            return &row;
        }
    }
    return nullptr;
}

bool is_list_type(SettingType type) {
    return type == T::path_list || type == T::image_list || type == T::enumeration_list ||
           type == T::version_list;
}

std::string_view type_description(const Setting& setting) {
    switch (setting.type) {
    case T::string:
        return "text";
    case T::name:
        return "name";
    case T::path:
        return "path";
    case T::output_path:
        return "directory";
    case T::path_list:
        return "list of paths";
    case T::image:
        return "image reference";
    case T::image_list:
        return "list of image references";
    case T::enumeration:
        return "one of the allowed values";
    case T::enumeration_list:
        return "list of allowed values";
    case T::boolean:
        return "true or false";
    case T::integer:
        return "whole number";
    case T::size:
        return "size";
    case T::url:
        return "URL";
    case T::credentials:
        return "USER:PASSWORD";
    case T::version_list:
        return "list of versions";
    }
    return "value";
}

std::string shown_value(const Setting& setting, const std::string& value) {
    if (setting.type == SettingType::credentials) {
        return value.empty() ? std::string() : std::string("(hidden)");
    }
    return value;
}

} // namespace edgeforge

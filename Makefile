# edgeforge: developer and user entry points. `make demo` and `make test` work on a fresh
# Debian 12 machine: both install what they need first (`make deps`).

BUILD_DIR ?= _build
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
EDGEFORGE := $(BUILD_DIR)/edgeforge
export EDGEFORGE_FIXTURES_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/edgeforge/fixtures

# Debian packages: building, running (boot assets, filesystem tools), and testing.
BUILD_PACKAGES := build-essential cmake pkg-config libarchive-dev libcurl4-openssl-dev \
	libyaml-cpp-dev libcli11-dev libssl-dev libguestfs-dev libfmt-dev doctest-dev \
	libisofs-dev libsquashfs-dev libzstd-dev zlib1g-dev libisal-dev nlohmann-json3-dev
# `inspect ARTIFACT` runs libguestfs's appliance: supermin builds it from the host's kernel,
# which supermin only recommends (and deps installs without recommends).
RUNTIME_PACKAGES := dosfstools mtools e2fsprogs grub-common grub-pc-bin grub-efi-amd64-bin \
	ca-certificates libguestfs0 supermin linux-image-amd64
TEST_PACKAGES := python3 qemu-system-x86 qemu-system-arm qemu-utils ovmf qemu-efi-aarch64 \
	xorriso squashfs-tools squashfs-tools-ng gdisk skopeo docker-registry busybox-static \
	cpio zstd kmod time debootstrap apache2-utils
ALL_PACKAGES := $(BUILD_PACKAGES) $(RUNTIME_PACKAGES) $(TEST_PACKAGES)

.PHONY: all deps build test unit e2e fixtures demo bench clean iso disk provider-images content

# `make` alone builds every configured output of the project in the current directory.
all: build
	$(EDGEFORGE) build all

deps:
	@missing=$$(for p in $(ALL_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed$$' || echo $$p; \
	done); \
	if [ -z "$$missing" ]; then echo "deps: all $(words $(ALL_PACKAGES)) packages present"; exit 0; fi; \
	echo "deps: installing $$missing"; \
	SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	$$SUDO apt-get update -qq && \
	DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing

build:
	@cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD_DIR) -j $(JOBS)

# Small real base OS images (OCI layouts) built from Debian packages; cached outside the repo.
fixtures:
	@python3 tests/fixtures/build-fixtures -q

unit: build
	$(BUILD_DIR)/edgeforge_unit_tests

test: deps build fixtures
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) --repeat until-pass:2

e2e: build fixtures
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) -L e2e

demo: deps build fixtures
	@bash examples/demo.sh $(EDGEFORGE)

bench: deps build
	@bash bench/run.sh $(EDGEFORGE)

clean:
	rm -rf $(BUILD_DIR) build

# Artifact targets for a project directory (see examples/basic/Makefile for a project's own).
iso: build
	$(EDGEFORGE) build iso

disk: build
	$(EDGEFORGE) build disk

provider-images: build
	$(EDGEFORGE) build provider

content: build
	$(EDGEFORGE) content build

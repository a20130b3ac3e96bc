# edgeforge: developer and user entry points. `make demo` and `make test` work on a fresh
# Debian 12 machine: both install what they need first (`make deps`).

BUILD_DIR ?= _build
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
EDGEFORGE := $(BUILD_DIR)/edgeforge
export EDGEFORGE_FIXTURES_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/edgeforge/fixtures

# Debian packages: building, running (boot assets, filesystem tools), and testing.
BUILD_PACKAGES := build-essential cmake pkg-config libarchive-dev libcurl4-openssl-dev \
	libyaml-cpp-dev libcli11-dev libssl-dev libguestfs-dev libfmt-dev doctest-dev \
	libisofs-dev libsquashfs-dev libzstd-dev zlib1g-dev liblzma-dev liblz4-dev libisal-dev \
	libxxhash-dev libext2fs-dev nlohmann-json3-dev
# `inspect ARTIFACT` runs libguestfs's appliance: supermin builds it from the host's kernel,
# which supermin only recommends (and deps installs without recommends).
RUNTIME_PACKAGES := dosfstools mtools e2fsprogs grub-common grub-pc-bin grub-efi-amd64-bin \
	ca-certificates libguestfs0 supermin linux-image-amd64
TEST_PACKAGES := python3 qemu-system-x86 qemu-system-arm qemu-utils ovmf qemu-efi-aarch64 \
	xorriso squashfs-tools squashfs-tools-ng gdisk guestfish skopeo docker-registry busybox-static \
	cpio zstd kmod time debootstrap rsync git apache2-utils efitools sbsigntool systemd-boot-efi \
	systemd-boot-efi:arm64 swtpm swtpm-tools libtss2-esys-3.0.2-0 libtss2-rc0 libtss2-mu0 libtss2-tcti-swtpm0
# The sanitizer and fuzzing build (make test-asan, make fuzz): clang with libFuzzer, and ccache
# (used by every build when present).
CHECK_PACKAGES := clang libclang-rt-14-dev ccache
ALL_PACKAGES := $(BUILD_PACKAGES) $(RUNTIME_PACKAGES) $(TEST_PACKAGES) $(CHECK_PACKAGES)

.PHONY: all deps build test unit e2e fixtures fuzz-record demo bench clean iso disk provider-images content \
	asan-build test-asan fuzz

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
	case "$$missing" in *:arm64*) dpkg --print-foreign-architectures | grep -qx arm64 || \
		$$SUDO dpkg --add-architecture arm64;; esac; \
	$$SUDO apt-get update -qq && \
	DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing

LAUNCHER := $(if $(shell command -v ccache),-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)

build:
	@cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(LAUNCHER) >/dev/null
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

# One clang build with AddressSanitizer, UndefinedBehaviorSanitizer and libFuzzer's coverage
# hooks serves both `make test-asan` and `make fuzz` (-O1 and line tables: quicker to build).
ASAN_BUILD_DIR ?= _build-asan
ASAN_FLAGS := -O1 -gline-tables-only
ASAN_CMAKE := -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
	-DCMAKE_C_FLAGS_DEBUG="$(ASAN_FLAGS)" -DCMAKE_CXX_FLAGS_DEBUG="$(ASAN_FLAGS)" \
	-DEDGEFORGE_SANITIZE=ON -DEDGEFORGE_FUZZ=ON
export ASAN_OPTIONS ?= detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1:fast_unwind_on_malloc=0
export UBSAN_OPTIONS ?= print_stacktrace=1:halt_on_error=1
export LSAN_OPTIONS ?= suppressions=$(CURDIR)/tests/sanitizers/lsan.supp:print_suppressions=0
FUZZ_TIME ?= 60

asan-build:
	@cmake -S . -B $(ASAN_BUILD_DIR) $(ASAN_CMAKE) $(LAUNCHER) >/dev/null
	@cmake --build $(ASAN_BUILD_DIR) -j $(JOBS)

# The unit tests and the command-line and bad-input end-to-end tests under the sanitizers.
test-asan: deps asan-build fixtures
	cd $(ASAN_BUILD_DIR) && ctest --output-on-failure -j $(JOBS) -R '^(unit|e2e_cli_test|e2e_badinput.*)$$'

# Every fuzz target for FUZZ_TIME seconds (make fuzz FUZZ_TIME=600; one target: FUZZ_TARGETS=inspect).
fuzz: deps asan-build
	@bash tests/fuzz/run.sh $(ASAN_BUILD_DIR) $(FUZZ_TIME) $(FUZZ_TARGETS)

# The same, recording each run in tests/fuzz/fuzz-hours.tsv (commit it: fuzzing time adds up
# across machines). make fuzz-record FUZZ_TIME=1800
fuzz-record: deps asan-build
	@FUZZ_RECORD=1 bash tests/fuzz/run.sh $(ASAN_BUILD_DIR) $(FUZZ_TIME) $(FUZZ_TARGETS)

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

// Writes an fs::Tree as a cpio archive in the "newc" format the Linux kernel unpacks as an
// initramfs (and GNU cpio, libarchive read).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "fs/tree.h"

namespace edgeforge::fs {

struct CpioOptions {
    // Directories whose entries are left out (the directory itself stays, empty): "/boot".
    std::vector<std::string> emptied_directories;
};

struct CpioStats {
    std::uint64_t entries = 0;    // archive members, hard links and the trailer not counted
    std::uint64_t data_bytes = 0; // file data written (each hard-linked file once)
    std::uint64_t bytes_out = 0;  // archive bytes, headers and padding included
    // newc has no place for extended attributes: how many were left out, and the first few as
    // "PATH: NAME", so the caller can say so.
    std::uint64_t skipped_xattr_count = 0;
    std::vector<std::string> skipped_xattrs;
};

// The bytes of the archive, in order; data bytes so far for a progress bar.
using CpioSink = std::function<void(const char* data, std::size_t size)>;
using CpioProgress = std::function<void(std::uint64_t data_done)>;

// Streams the whole tree as newc members in walk order (parents first, names sorted), the root
// as ".", then the TRAILER!!! member: inode numbers counted from 1 in that order (hard links
// share theirs and carry the data once, on their first name, as the kernel expects), modes,
// owners, modification times and device numbers from the tree, no device of the archive (0:0).
// The same tree gives the same bytes. Throws Error (bad input) naming the path when a file does
// not fit the format (4 GiB or more of data, a name over 4095 bytes) and build failed when the
// data cannot be read.
CpioStats write_cpio(const Tree& tree, const SpillFile& spill, const CpioOptions& options,
                     const CpioSink& sink, const CpioProgress& progress = {});

} // namespace edgeforge::fs

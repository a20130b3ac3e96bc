#!/usr/bin/env python3
"""Fails when a source file includes a header from a layer above its own.

The layers of lib/, bottom to top. A folder may include its own headers and those of any
folder with a lower rank; folders of equal rank do not include each other. tools/ (main) sits
on top. Usage: check_layers.py [REPO_ROOT]
"""
import os
import re
import sys

RANKS = {
    "util": 0,      # leaf helpers: no project includes
    "base": 1,      # error, arch, console, locks, templates, artifacts
    "fs": 2,        # file-system writers and readers (squashfs, ext4, GPT, trees)
    "userdata": 2,  # cloud-config merge and validation
    "cloud": 2,     # AWS signing and upload
    "secureboot": 2,  # UEFI Secure Boot keys, signature lists, authenticated variables
    "oci": 3,       # images, registries, layer merge
    "boot": 3,      # EFI, GRUB, BIOS boot pieces
    "formats": 4,   # image file writers and readers (ISO, qcow2, VMDK, OVA, VHD, GCE)
    "content": 4,   # air-gapped content bundles
    "inspect": 5,   # reading finished artifacts back
    "build": 6,     # settings, plans, the outputs table and the product builders
    "tools": 7,     # the command line (main)
}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([a-z_]+)/[^"]+"', re.MULTILINE)


def folder_of(path, root):
    rel = os.path.relpath(path, root).split(os.sep)
    if rel[0] == "lib":
        return rel[1]
    return rel[0]


def main():
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else ".")
    problems = []
    for top in ("lib", "tools"):
        for dirpath, _, names in os.walk(os.path.join(root, top)):
            for name in sorted(names):
                if not name.endswith((".h", ".cpp")):
                    continue
                path = os.path.join(dirpath, name)
                folder = folder_of(path, root)
                if folder not in RANKS:
                    problems.append(f"{os.path.relpath(path, root)}: folder '{folder}' has no layer; "
                                    "add it to RANKS in tests/lint/check_layers.py")
                    continue
                text = open(path, encoding="utf-8").read()
                for match in INCLUDE.finditer(text):
                    target = match.group(1)
                    if target == folder:
                        continue
                    line = text.count("\n", 0, match.start()) + 1
                    if target not in RANKS:
                        problems.append(f"{os.path.relpath(path, root)}:{line}: includes unknown folder '{target}'")
                    elif RANKS[target] >= RANKS[folder]:
                        problems.append(f"{os.path.relpath(path, root)}:{line}: {folder} (layer {RANKS[folder]}) "
                                        f"includes {target} (layer {RANKS[target]}): includes must point down")
    for p in problems:
        print(p)
    if problems:
        print(f"{len(problems)} upward include(s); see the layer rule in README.md (Architecture)")
        return 1
    print("layers: every include points down")
    return 0


if __name__ == "__main__":
    sys.exit(main())

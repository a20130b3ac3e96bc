#!/usr/bin/env python3
"""Writes the hostile local inputs of tests/e2e/badinput_test.sh into a directory.

badinput_gen.py OUT FIXTURES

OUT/yaml/      YAML documents: alias bombs, deep nesting, duplicate keys, bad bytes, huge values
OUT/img/       OCI layouts (and archives) with one hostile property each; a tiny benign
               file sits next to the hostile part so that only that part is wrong
OUT/art/       damaged artifacts for `inspect` (the ISO ones are made by the shell script from
               a real ISO)
Every name is fixed, so the shell script refers to them directly.
"""
import gzip
import hashlib
import io
import json
import lzma
import os
import shutil
import struct
import subprocess
import sys
import tarfile
import zlib

out, fixtures = sys.argv[1], sys.argv[2]
ESCAPE = "edgeforge-catalogue-escape"  # a file name that must never appear on the host


def write(path, data, mode=None):
    path = os.path.join(out, path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())
    if mode is not None:
        os.chmod(path, mode)


# --- YAML -----------------------------------------------------------------------------------
def bomb(key):
    """A billion-laughs document under KEY: 9 levels of 9 aliases each (9^9 nodes expanded)."""
    lines = [key + ":", '  - &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 9):
        lines.append("  - &a%d [%s]" % (i, ", ".join(["*a%d" % (i - 1)] * 9)))
    return "\n".join(lines) + "\n"


def flow_nesting(key, depth=100000):
    return "%s: %s%s\n" % (key, "[" * depth, "]" * depth)


def block_nesting(key, depth=400):
    lines = [key + ":"]
    for i in range(1, depth):
        lines.append("  " * i + "k%d:" % i)
    lines.append("  " * depth + "leaf: 1")
    return "\n".join(lines) + "\n"


HUGE = "a" * 200_001
cloud = "#cloud-config\n"
site_ud = cloud + "stylus:\n  site:\n    paletteEndpoint: api.example.com\n"

# edgeforge.yaml
write("yaml/cfg-bomb.yaml", "name: bomb\n" + bomb("x_bomb"))
write("yaml/cfg-bomb-value.yaml", "base:\n  image: oci:x\nagent:\n" + bomb("  images").replace("\n  -", "\n    -"))
write("yaml/cfg-flow-deep.yaml", "name: deep\n" + flow_nesting("agent"))
write("yaml/cfg-block-deep.yaml", "name: deep\n" + block_nesting("squashfs"))
write("yaml/cfg-dup.yaml", "name: first\narch: amd64\nname: second\n")
write("yaml/cfg-dup-nested.yaml", "squashfs:\n  level: 3\n  compression: zstd\n  level: 4\n")
write("yaml/cfg-utf8.yaml", b"arch: amd64\nname: caf\xe9-\xff\xfe\n")
write("yaml/cfg-nul.yaml", b"arch: amd64\nname: a\x00b\n")
write("yaml/cfg-nul-key.yaml", b"arch: amd64\nna\x00me: x\n")
write("yaml/cfg-huge-name.yaml", "name: " + HUGE + "\n")
write("yaml/cfg-huge-key.yaml", HUGE + ": 1\n")
write("yaml/cfg-unknown.yaml", "name: ok\nsquashfs:\n  compresion: xz\nfrobnicate: 1\n")
write("yaml/cfg-type-name.yaml", "name: [a, b]\n")
write("yaml/cfg-type-base.yaml", "base: oci:x\n")
write("yaml/cfg-type-level.yaml", "squashfs:\n  level: {x: 1}\n")
write("yaml/cfg-type-root.yaml", "- name\n- arch\n")
write("yaml/cfg-unterminated.yaml", "name: ok\narch: \"amd64\nbase: {image: oci:x\n")
write("yaml/cfg-tab.yaml", "name: ok\nbase:\n\timage: oci:x\n")
write("yaml/cfg-multidoc.yaml", "name: one\n---\nname: two\n")
write("yaml/cfg-nested-default.yaml",
      "name: " + "${X:-" * 20000 + "deep" + "}" * 20000 + "\n")
write("yaml/cfg-level-huge.yaml", "squashfs:\n  level: 99999999999999999999999999999\n")
# user-data
write("yaml/ud-bomb.yaml", site_ud + bomb("stages"))
write("yaml/ud-flow-deep.yaml", site_ud + flow_nesting("stages"))
write("yaml/ud-block-deep.yaml", site_ud + block_nesting("stages"))
write("yaml/ud-dup.yaml", cloud + "stylus:\n  site:\n    paletteEndpoint: a.example.com\n"
      "    projectName: x\n    paletteEndpoint: b.example.com\n")
write("yaml/ud-utf8.yaml", (site_ud + "    projectName: \xff\xfe\n").encode("latin-1"))
write("yaml/ud-nul.yaml", (site_ud + "    projectName: a\x00b\n").encode())
write("yaml/ud-huge-endpoint.yaml", cloud + "stylus:\n  site:\n    paletteEndpoint: " + HUGE + ".example.com\n")
write("yaml/ud-huge-noproxy.yaml", site_ud + "    network:\n      httpProxy: http://proxy.example.com:3128\n"
      "      noProxy:\n        - " + HUGE + "\n")
write("yaml/ud-type.yaml", cloud + "stylus:\n  site: [1, 2]\n")
write("yaml/ud-root-scalar.yaml", cloud + "just a string\n")
# site files (merged over the org user-data)
write("yaml/sites-bomb/s1.yaml", "stylus:\n  site:\n    name: s1\n" + bomb("stages"))
write("yaml/sites-deep/s1.yaml", "stylus:\n  site:\n    name: s1\n" + flow_nesting("stages"))
write("yaml/sites-dup/s1.yaml", "stylus:\n  site:\n    name: s1\n    name: s2\n")
write("yaml/sites-utf8/s1.yaml", b"stylus:\n  site:\n    name: s\xc0\xaf1\n")
write("yaml/sites-huge/s1.yaml", "stylus:\n  site:\n    name: s1\n    paletteEndpoint: " + HUGE + "\n")
# content manifests
write("yaml/man-bomb.yaml", bomb("images"))
write("yaml/man-deep.yaml", flow_nesting("images"))
write("yaml/man-dup.yaml", "images:\n  - oci:a\ncharts: []\nimages:\n  - oci:b\n")
write("yaml/man-unknown.yaml", "images: []\nfiels:\n  - path: x\n")
write("yaml/man-type.yaml", "images: 5\n")
write("yaml/man-huge-chart.yaml", "charts:\n  - " + HUGE + ".tgz\n")
write("yaml/man-file-escape.yaml", "files:\n  - path: /etc/hostname\n    dest: ../../" + ESCAPE + "\n")
write("yaml/man-file-mode.yaml", "files:\n  - path: man-file-mode.yaml\n    mode: \"99999\"\n")
# plain-text inputs
write("yaml/images-huge.txt", "oci:" + HUGE + "\n")
write("yaml/images-nul.txt", b"oci:a\x00b\n")
write("yaml/images-many-fields.txt", "oci:a name extra fields here\n")

# --- OCI layouts ----------------------------------------------------------------------------
LAYER = {"gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
         "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
         "none": "application/vnd.oci.image.layer.v1.tar",
         # No media type says xz; Docker reads such layers under the plain one, and so does
         # libarchive (it detects the compression).
         "xz": "application/vnd.oci.image.layer.v1.tar"}


def tar_of(entries):
    """entries: (name, kind, data_or_target); kinds file, dir, sym, link."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, kind, value in entries:
            info = tarfile.TarInfo("x")
            info.name = name  # set after construction: TarInfo keeps it as written
            info.mtime = 1700000000
            if kind == "file":
                info.size = len(value)
                tar.addfile(info, io.BytesIO(value))
                continue
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            elif kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, value
            elif kind == "link":
                info.type, info.linkname = tarfile.LNKTYPE, value
            tar.addfile(info)
    return raw.getvalue()


def compress(data, how):
    if how == "gzip":
        return gzip.compress(data, mtime=0)
    if how == "zstd":
        return subprocess.run(["zstd", "-q", "-c", "-3"], input=data, stdout=subprocess.PIPE,
                              check=True).stdout
    if how == "xz":
        return lzma.compress(data)
    return data


class Layout:
    def __init__(self, name, tars, how="gzip", arch="amd64"):
        self.dir = os.path.join(out, "img", name)
        self.blobs = os.path.join(self.dir, "blobs", "sha256")
        os.makedirs(self.blobs)
        self.layers = []
        diff_ids = []
        for data in tars:
            blob = compress(data, how)
            self.layers.append({"mediaType": LAYER[how], "digest": self.put(blob), "size": len(blob)})
            diff_ids.append("sha256:" + hashlib.sha256(data).hexdigest())
        self.config = {"architecture": arch, "os": "linux", "config": {},
                       "rootfs": {"type": "layers", "diff_ids": diff_ids},
                       "created": "2023-11-14T22:13:20Z"}
        self.manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                         "layers": self.layers}
        self.entry = {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                      "annotations": {"org.opencontainers.image.ref.name": "latest"}}

    def put(self, data):
        digest = hashlib.sha256(data).hexdigest()
        with open(os.path.join(self.blobs, digest), "wb") as f:
            f.write(data)
        return "sha256:" + digest

    def finish(self, index=None):
        config = json.dumps(self.config).encode()
        self.manifest["config"] = {"mediaType": "application/vnd.oci.image.config.v1+json",
                                   "digest": self.put(config), "size": len(config)}
        manifest = json.dumps(self.manifest).encode()
        self.entry.update(digest=self.put(manifest), size=len(manifest))
        with open(os.path.join(self.dir, "oci-layout"), "w") as f:
            f.write('{"imageLayoutVersion":"1.0.0"}')
        with open(os.path.join(self.dir, "index.json"), "wb") as f:
            f.write(index if index is not None else json.dumps(
                {"schemaVersion": 2, "manifests": [self.entry]}).encode())
        return self

    def blob(self, digest):
        return os.path.join(self.blobs, digest.split(":", 1)[1])


benign = ("etc/benign", "file", b"benign\n")


def layout(name, *entries, how="gzip", arch="amd64"):
    return Layout(name, [tar_of([benign] + list(entries))], how=how, arch=arch).finish()


# Hostile paths and links in a layer.
layout("trav-dotdot", ("../../../../../../tmp/" + ESCAPE, "file", b"x"))
layout("trav-middle", ("etc/../../" + ESCAPE, "file", b"x"))
layout("trav-absolute", ("/../../" + ESCAPE, "file", b"x"))
layout("trav-dir", ("../", "dir", None), ("../" + ESCAPE, "file", b"x"))
layout("sym-abs-escape", ("etc/esc", "sym", "/tmp"), ("etc/esc/" + ESCAPE, "file", b"x"))
layout("sym-rel-escape", ("etc/up", "sym", "../../../../../.."), ("etc/up/tmp/" + ESCAPE, "file", b"x"))
layout("hardlink-escape", ("etc/hl", "link", "../../../../etc/passwd"))
layout("hardlink-abs-host", ("etc/hl", "link", "/etc/shadow"))
layout("hardlink-dir", ("etc/hl", "link", "etc"))
layout("whiteout-dotdot", ("etc/.wh...", "file", b""))
layout("trav-zstd", ("../" + ESCAPE, "file", b"x"), how="zstd")

# Blobs: missing, mismatched, truncated, not what they claim.
img = layout("missing-layer")
os.remove(img.blob(img.layers[0]["digest"]))
img = layout("missing-config")
os.remove(img.blob(img.manifest["config"]["digest"]))
img = layout("missing-manifest")
os.remove(img.blob(img.entry["digest"]))
img = layout("layer-digest-mismatch")
with open(img.blob(img.layers[0]["digest"]), "r+b") as f:
    f.seek(20)
    f.write(b"\x00\x01\x02")
img = layout("config-digest-mismatch")
with open(img.blob(img.manifest["config"]["digest"]), "ab") as f:
    f.write(b" ")
big_tar = tar_of([benign, ("etc/big", "file", os.urandom(300_000))])
for how in ("gzip", "zstd"):
    img = Layout("truncated-" + how, [big_tar], how=how)
    data = compress(big_tar, how)
    data = data[: len(data) // 2]  # the descriptor and digest match the truncated bytes
    os.remove(img.blob(img.layers[0]["digest"]))
    img.layers[0].update(digest=img.put(data), size=len(data))
    img.finish()
img = Layout("not-a-tar", [b""])
junk = gzip.compress(os.urandom(5000), mtime=0)
os.remove(img.blob(img.layers[0]["digest"]))
img.layers[0].update(digest=img.put(junk), size=len(junk))
img.finish()
img = Layout("huge-layer-size", [tar_of([benign])])
img.layers[0]["size"] = 2**62
img.finish()
img = Layout("negative-layer-size", [tar_of([benign])])
img.layers[0]["size"] = -1
img.finish()
img = Layout("huge-config-size", [tar_of([benign])])
img.finish()
manifest = json.load(open(img.blob(img.entry["digest"])))
manifest["config"]["size"] = 2**62
data = json.dumps(manifest).encode()
img.entry.update(digest=img.put(data), size=len(data))
with open(os.path.join(img.dir, "index.json"), "w") as f:
    json.dump({"schemaVersion": 2, "manifests": [img.entry]}, f)
img = Layout("digest-traversal", [tar_of([benign])])
img.layers[0]["digest"] = "sha256:../../../../../../etc/passwd"
img.finish()
img = Layout("digest-bad-algo", [tar_of([benign])])
img.layers[0]["digest"] = "md5:d41d8cd98f00b204e9800998ecf8427e"
img.finish()
img = Layout("layer-media-type", [tar_of([benign])])
img.layers[0]["mediaType"] = "application/x-edgeforge-nonsense"
img.finish()
img = Layout("diff-ids-short", [tar_of([benign])])
img.config["rootfs"]["diff_ids"] = []
img.finish()
img = Layout("diff-ids-missing", [tar_of([benign])])
del img.config["rootfs"]
img.finish()
img = Layout("diff-id-number", [tar_of([benign]), tar_of([("etc/two", "file", b"2")])])
img.config["rootfs"]["diff_ids"][1] = 42
img.finish()
# A diff_id that is not the layer's, for each way a layer is stored (the merge checks all).
for how in ("none", "gzip", "zstd", "xz"):
    img = Layout("diff-id-wrong-" + how, [tar_of([benign])], how=how)
    img.config["rootfs"]["diff_ids"][0] = "sha256:" + "ab" * 32
    img.finish()
layout("wrong-arch", arch="arm64")
img = Layout("wrong-os", [tar_of([benign])])
img.config["os"] = "windows"
img.finish()
# index.json
layout("index-garbage").finish(index=os.urandom(2000))
layout("index-empty").finish(index=b"")
layout("index-no-manifests").finish(index=b'{"schemaVersion": 2, "manifests": []}')
layout("index-deep").finish(index=b'{"schemaVersion": 2, "manifests": ' + b"[" * 100000 + b"]" * 100000 + b"}")
layout("index-wrong-type").finish(index=b'{"schemaVersion": 2, "manifests": {"digest": 5}}')
img = Layout("index-size-lies", [tar_of([benign])]).finish()
img.entry["size"] = 3
with open(os.path.join(img.dir, "index.json"), "w") as f:
    json.dump({"schemaVersion": 2, "manifests": [img.entry]}, f)
# An index entry that is an image index whose only child is a blob the layout does not have.
img = Layout("index-dangling-child", [tar_of([benign])]).finish()
child = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                    "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                   "digest": "sha256:" + "0" * 64, "size": 10,
                                   "platform": {"architecture": "amd64", "os": "linux"}}]}).encode()
img.entry.update(mediaType="application/vnd.oci.image.index.v1+json", digest=img.put(child), size=len(child))
with open(os.path.join(img.dir, "index.json"), "w") as f:
    json.dump({"schemaVersion": 2, "manifests": [img.entry]}, f)

# Archives that end half way: oci-archive, docker-archive and tar: sources.
def truncated_copy(source, dest):
    data = open(source, "rb").read()
    write(dest, data[: len(data) * 2 // 3])


def tar_dir(directory, dest):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name in sorted(os.listdir(directory)):
            tar.add(os.path.join(directory, name), arcname=name)
    write(dest, raw.getvalue())


big = Layout("big", [big_tar]).finish()
tar_dir(big.dir, "img/big-oci.tar")
truncated_copy(os.path.join(out, "img/big-oci.tar"), "img/truncated-oci-archive.tar")
# docker-archive: manifest.json + config + layer.tar
docker = io.BytesIO()
config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                     "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(big_tar).hexdigest()]}}).encode()
with tarfile.open(fileobj=docker, mode="w") as tar:
    def add(name, data):
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    add("manifest.json", json.dumps([{"Config": "config.json", "RepoTags": ["edge/big:1"],
                                      "Layers": ["layer.tar"]}]).encode())
    add("config.json", config)
    add("layer.tar", big_tar)
data = docker.getvalue()
write("img/docker.tar", data)
# cut inside layer.tar, which is stored last
write("img/truncated-docker-archive.tar", data[: len(data) - 200_000])
docker_escape = io.BytesIO()
with tarfile.open(fileobj=docker_escape, mode="w") as tar:
    info = tarfile.TarInfo("manifest.json")
    body = json.dumps([{"Config": "../../../../etc/passwd", "RepoTags": ["edge/x:1"],
                        "Layers": ["../../../../etc/shadow"]}]).encode()
    info.size = len(body)
    tar.addfile(info, io.BytesIO(body))
write("img/docker-archive-escape.tar", docker_escape.getvalue())
gz = gzip.compress(big_tar, mtime=0)
write("img/truncated-layer.tar.gz", gz[: len(gz) // 2])

# CanvOS's local-ui.tar, unpacked into /opt/spectrocloud/: nothing may leave that directory.
write("img/local-ui-dotdot.tar", tar_of([("ui/index.html", "file", b"<html>"),
                                         ("../../tmp/" + ESCAPE, "file", b"x")]))
write("img/local-ui-symlink.tar", tar_of([("up", "sym", "/etc"), ("up/" + ESCAPE, "file", b"x")]))
write("img/local-ui-hardlink.tar", tar_of([("shadow", "link", "../../etc/shadow")]))
ui = tar_of([("ui/big", "file", os.urandom(200_000))])
write("img/local-ui-truncated.tar", ui[: len(ui) // 2])
write("img/empty.tar", b"")

# --- damaged artifacts for inspect ----------------------------------------------------------
def crc(data):
    return zlib.crc32(data) & 0xFFFFFFFF


def gpt(name, entries, entry_size, header_size=92, sectors=2048):
    disk = bytearray(sectors * 512)
    # protective MBR
    disk[446:462] = struct.pack("<BBBBBBBBII", 0, 0, 2, 0, 0xEE, 0xFF, 0xFF, 0xFF, 1, sectors - 1)
    disk[510:512] = b"\x55\xaa"
    header = bytearray(struct.pack("<8sIIIIQQQQ16sQIII", b"EFI PART", 0x00010000, header_size, 0,
                                   0, 1, sectors - 1, 34, sectors - 34, os.urandom(16), 2,
                                   entries, entry_size, 0))
    header[16:20] = struct.pack("<I", crc(bytes(header[:92])))
    disk[512:512 + 92] = header
    write("art/" + name, bytes(disk))


gpt("gpt-count.raw", 0xFFFFFFFF, 128)
gpt("gpt-entry-size.raw", 128, 0x80000000)
gpt("gpt-header-size.raw", 128, 128, header_size=0xFFFFFFFF)
# qcow2: version 3, an absurd virtual size and L1 table; and one whose backing file is a host
# file (inspect must not read the host's /etc/shadow through it).
qcow_huge = struct.pack(">4sIQIIQIIQQIIQQQII", b"QFI\xfb", 3, 0, 0, 16, 2**63 - 512, 0,
                        0xFFFFFFFF, 0x30000, 0x10000, 1, 0, 0, 0, 0, 4, 104)
write("art/qcow2-huge.qcow2", qcow_huge + bytes(4096 - len(qcow_huge)))
backing = b"/etc/shadow"
qcow_backing = bytearray(struct.pack(">4sIQIIQIIQQIIQQQII", b"QFI\xfb", 3, 512, len(backing), 16,
                                     1 << 20, 0, 1, 0x30000, 0x10000, 1, 0, 0, 0, 0, 4, 104))
qcow_backing += bytes(512 - len(qcow_backing)) + backing
write("art/qcow2-backing.qcow2", bytes(qcow_backing) + bytes(0x40000 - len(qcow_backing)))
write("art/random.bin", os.urandom(1 << 20))
write("art/empty.iso", b"")
os.makedirs(os.path.join(out, "art/a-directory.iso"), exist_ok=True)

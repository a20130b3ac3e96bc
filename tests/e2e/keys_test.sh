#!/usr/bin/env bash
# `edgeforge keys generate`: the Secure Boot key directory judged by tools we did not write.
# efitools (sig-list-to-certs, cert-to-efi-sig-list, sign-efi-sig-list) must read and rebuild
# the .esl and .auth files byte for byte, openssl must read the certificates and verify the
# .auth signatures, and sbsign/sbverify must sign and verify an EFI binary with db.key/db.pem.
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_tools openssl python3 sig-list-to-certs cert-to-efi-sig-list sign-efi-sig-list sbsign sbverify

keys=$work/keys
out=$work/generate.out
"$bin" keys generate --org ACME --keys "$keys" >"$out" 2>&1
code=$?
detail="exit $code: $(tail -3 "$out")"
check "keys generate --org ACME --keys DIR succeeds" test "$code" -eq 0
for name in PK KEK db; do
    for ext in key pem der esl auth; do
        detail="missing $keys/$name.$ext"
        check "$name.$ext is written" test -s "$keys/$name.$ext"
    done
done
for name in tpm2-pcr-private.pem tpm2-pcr-public.pem GUID.txt .gitignore README.txt; do
    detail="missing $keys/$name"
    check "$name is written" test -s "$keys/$name"
done

# Private keys: mode 0600, ignored by git, never printed.
for name in PK.key KEK.key db.key tpm2-pcr-private.pem; do
    mode=$(stat -c %a "$keys/$name")
    detail="mode $mode"
    check "$name has mode 0600" test "$mode" = 600
done
detail="$(cat "$keys/.gitignore")"
check ".gitignore lists *.key" grep -qx '\*.key' "$keys/.gitignore"
detail="$(cat "$keys/.gitignore")"
check ".gitignore lists tpm2-pcr-private.pem" grep -qx 'tpm2-pcr-private.pem' "$keys/.gitignore"
guid=$(tr -d '\n' <"$keys/GUID.txt")
detail="GUID.txt: $guid"
check "GUID.txt holds one GUID" grep -qxE '[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}' "$keys/GUID.txt"
detail="$(cat "$out")"
check "the summary names the owner GUID" grep -q "$guid" "$out"
"$bin" --json keys generate --org ACME --keys "$work/json-keys" >"$work/json.out" 2>"$work/json.err"
detail="$(head -c 300 "$work/json.out")"
check "--json prints the owner GUID and expiry" python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert len(d["owner_guid"]) == 36 and d["not_after"].startswith("2038-11-10"), d
assert {f["name"] for f in d["files"] if f["private"]} == {"PK.key", "KEK.key", "db.key", "tpm2-pcr-private.pem"}
' "$work/json.out"
detail="a private key appears in the output"
check "no private key material in the text or --json output" \
    bash -c '! grep -q "PRIVATE KEY" "$1" "$2" "$3"' _ "$out" "$work/json.out" "$work/json.err"

# The certificates: subject, ~15 years (5475 days from SOURCE_DATE_EPOCH 2023-11-14), RSA 2048.
subject=$(openssl x509 -in "$keys/PK.pem" -noout -subject -nameopt RFC2253)
detail="$subject"
check "PK.pem's subject is CN=ACME PK,O=ACME" test "$subject" = "subject=CN=ACME PK,O=ACME"
for name in KEK db; do
    subject=$(openssl x509 -in "$keys/$name.pem" -noout -subject -nameopt RFC2253)
    detail="$subject"
    check "$name.pem's subject is CN=ACME $name,O=ACME" test "$subject" = "subject=CN=ACME $name,O=ACME"
done
enddate=$(openssl x509 -in "$keys/PK.pem" -noout -enddate)
detail="$enddate"
check "PK.pem expires 5475 days after SOURCE_DATE_EPOCH" test "$enddate" = "notAfter=Nov 10 22:13:20 2038 GMT"
startdate=$(openssl x509 -in "$keys/db.pem" -noout -startdate)
detail="$startdate"
check "db.pem starts at SOURCE_DATE_EPOCH" test "$startdate" = "notBefore=Nov 14 22:13:20 2023 GMT"
text=$(openssl x509 -in "$keys/db.pem" -noout -text)
detail="$(grep -A1 -E 'Public-Key|Basic Constraints' <<<"$text")"
check "db.pem is RSA 2048, sha256WithRSA, basicConstraints critical CA:TRUE" bash -c \
    'grep -q "Public-Key: (2048 bit)" <<<"$1" && grep -q "Signature Algorithm: sha256WithRSAEncryption" <<<"$1" &&
     grep -A1 "Basic Constraints: critical" <<<"$1" | grep -q "CA:TRUE"' _ "$text"
openssl x509 -in "$keys/db.der" -inform DER -outform PEM -out "$work/db-from-der.pem"
detail="$(diff "$work/db-from-der.pem" "$keys/db.pem" | head -3)"
check "db.der is db.pem in DER" cmp -s "$work/db-from-der.pem" "$keys/db.pem"
for name in PK KEK db; do
    detail="$(openssl verify -CAfile "$keys/$name.pem" "$keys/$name.pem" 2>&1)"
    check "$name.pem verifies as its own root" bash -c 'openssl verify -CAfile "$1" "$1" >/dev/null 2>&1' \
        _ "$keys/$name.pem"
done
detail="$(openssl verify -CAfile "$keys/KEK.pem" "$keys/db.pem" 2>&1)"
check "db.pem does not chain to KEK (each certificate is its own root)" \
    bash -c '! openssl verify -CAfile "$1" "$2" >/dev/null 2>&1' _ "$keys/KEK.pem" "$keys/db.pem"
for name in PK KEK db; do
    detail="$(openssl x509 -in "$keys/$name.pem" -noout -modulus | md5sum) vs $(openssl rsa -in "$keys/$name.key" -noout -modulus 2>&1 | md5sum)"
    check "$name.key is $name.pem's private key" \
        test "$(openssl x509 -in "$keys/$name.pem" -noout -modulus)" = "$(openssl rsa -in "$keys/$name.key" -noout -modulus)"
done
detail="$(openssl pkey -in "$keys/tpm2-pcr-private.pem" -pubout 2>&1 | diff - "$keys/tpm2-pcr-public.pem" | head -3)"
check "tpm2-pcr-public.pem is the public half of tpm2-pcr-private.pem" \
    bash -c 'openssl pkey -in "$1" -pubout | cmp -s - "$2"' _ "$keys/tpm2-pcr-private.pem" "$keys/tpm2-pcr-public.pem"

# The signature lists: efitools reads the certificate back and rebuilds the list identically.
mkdir -p "$work/certs"
for name in PK KEK db; do
    sig-list-to-certs "$keys/$name.esl" "$work/certs/$name" >/dev/null
    detail="$(ls "$work/certs")"
    check "sig-list-to-certs $name.esl gives $name.der" cmp -s "$work/certs/$name-0.der" "$keys/$name.der"
    cert-to-efi-sig-list -g "$guid" "$keys/$name.pem" "$work/$name.esl" >/dev/null
    detail="$(cmp "$work/$name.esl" "$keys/$name.esl" 2>&1)"
    check "cert-to-efi-sig-list -g GUID $name.pem equals $name.esl" cmp -s "$work/$name.esl" "$keys/$name.esl"
done

# The authenticated updates: sign-efi-sig-list with the same signer and timestamp writes the
# same bytes (RSA PKCS#1 v1.5 signatures are deterministic): PK by PK, KEK by PK, db by KEK.
for triple in "PK PK" "KEK PK" "db KEK"; do
    set -- $triple
    sign-efi-sig-list -t "2023-11-14 22:13:20" -k "$keys/$2.key" -c "$keys/$2.pem" "$1" \
        "$keys/$1.esl" "$work/$1.auth" >/dev/null
    detail="$(cmp "$work/$1.auth" "$keys/$1.auth" 2>&1)"
    check "$1.auth equals sign-efi-sig-list's, signed by $2" cmp -s "$work/$1.auth" "$keys/$1.auth"
done

# And independently of efitools: take the .auth apart, rebuild the signed bytes (UEFI 2.x
# 8.2.2), and let openssl verify the PKCS#7 against the expected signer only.
split_auth() { # split_auth AUTH VARIABLE OUT_PREFIX: OUT.p7 (ContentInfo DER), OUT.data
    python3 - "$@" <<'PY'
import struct, sys
auth, name, prefix = sys.argv[1], sys.argv[2], sys.argv[3]
d = open(auth, "rb").read()
time = d[:16]
length, revision, cert_type = struct.unpack("<IHH", d[16:24])
assert revision == 0x0200 and cert_type == 0x0EF1, (revision, cert_type)
pkcs7_guid = bytes.fromhex("9dd2af4adf68ee498aa9347d375665a7")
assert d[24:40] == pkcs7_guid, d[24:40].hex()
signed = d[40:16 + length]
esl = d[16 + length:]
vendor = {"PK": "61dfe48bca93d211aa0d00e098032b8c", "KEK": "61dfe48bca93d211aa0d00e098032b8c",
          "db": "cbb219d73a3d9645a3bcdad00e67656f"}[name]
data = name.encode("utf-16-le") + bytes.fromhex(vendor) + struct.pack("<I", 0x27) + time + esl
# UEFI's CertData is the bare SignedData; openssl wants a ContentInfo around it.
def der_length(n):
    return bytes([0x82, n >> 8, n & 0xff])
oid = bytes.fromhex("06092a864886f70d010702")
explicit = b"\xa0" + der_length(len(signed)) + signed
open(prefix + ".p7", "wb").write(b"\x30" + der_length(len(oid) + len(explicit)) + oid + explicit)
open(prefix + ".data", "wb").write(data)
open(prefix + ".esl", "wb").write(esl)
PY
}
for triple in "PK PK" "KEK PK" "db KEK"; do
    set -- $triple
    split_auth "$keys/$1.auth" "$1" "$work/$1-auth"
    detail="$(cmp "$work/$1-auth.esl" "$keys/$1.esl" 2>&1)"
    check "$1.auth carries $1.esl after its header" cmp -s "$work/$1-auth.esl" "$keys/$1.esl"
    detail="$(openssl smime -verify -binary -inform DER -in "$work/$1-auth.p7" -content "$work/$1-auth.data" \
        -certfile "$keys/$2.pem" -nointern -noverify -out /dev/null 2>&1)"
    check "openssl verifies $1.auth's signature by $2" bash -c 'openssl smime -verify -binary \
        -inform DER -in "$1" -content "$2" -certfile "$3" -nointern -noverify -out /dev/null \
        2>/dev/null' _ "$work/$1-auth.p7" "$work/$1-auth.data" "$keys/$2.pem"
done
detail="db.auth verified with PK.pem"
check "openssl rejects db.auth's signature with PK as the signer" bash -c '! openssl smime -verify -binary \
    -inform DER -in "$1" -content "$2" -certfile "$3" -nointern -noverify -out /dev/null 2>/dev/null' \
    _ "$work/db-auth.p7" "$work/db-auth.data" "$keys/PK.pem"

# The db key signs EFI binaries (Authenticode) that sbverify accepts with db.pem.
efi=$(ls /usr/lib/efitools/*/HelloWorld.efi 2>/dev/null | head -1)
if [ -n "$efi" ]; then
    sbsign --key "$keys/db.key" --cert "$keys/db.pem" --output "$work/hello.signed.efi" "$efi" \
        >"$work/sbsign.out" 2>&1
    detail="$(cat "$work/sbsign.out")"
    check "sbsign signs an EFI binary with db.key and db.pem" test -s "$work/hello.signed.efi"
    detail="$(sbverify --cert "$keys/db.pem" "$work/hello.signed.efi" 2>&1)"
    check "sbverify --cert db.pem accepts it" bash -c 'sbverify --cert "$1" "$2" >/dev/null 2>&1' \
        _ "$keys/db.pem" "$work/hello.signed.efi"
    detail="$(sbverify --cert "$keys/KEK.pem" "$work/hello.signed.efi" 2>&1)"
    check "sbverify --cert KEK.pem rejects it" bash -c '! sbverify --cert "$1" "$2" >/dev/null 2>&1' \
        _ "$keys/KEK.pem" "$work/hello.signed.efi"
else
    fail "an EFI binary to sign" "no /usr/lib/efitools/*/HelloWorld.efi (apt-get install efitools)"
fi

# A second run without --force: exit 2 naming the files, and nothing changed.
(cd "$keys" && sha256sum $(ls -A) >"$work/before.sha256")
cp "$keys/db.key" "$work/db.key.before"
"$bin" keys generate --org ACME --keys "$keys" >"$work/again.out" 2>&1
code=$?
detail="exit $code: $(cat "$work/again.out")"
check "a second run without --force exits 2" test "$code" -eq 2
detail="$(cat "$work/again.out")"
check "the refusal names the key files and --force" bash -c 'grep -q "PK.key" "$1" && grep -q -- "--force" "$1"' _ "$work/again.out"
detail="$(cd "$keys" && sha256sum -c --quiet "$work/before.sha256" 2>&1 | head -3)"
check "the refused run changed nothing" bash -c 'cd "$1" && sha256sum -c --quiet "$2" >/dev/null' _ "$keys" "$work/before.sha256"
"$bin" keys generate --org ACME --keys "$keys" --force >"$work/force.out" 2>&1
code=$?
detail="exit $code: $(cat "$work/force.out")"
check "--force replaces the keys" bash -c '[ "$1" -eq 0 ] && ! cmp -s "$2/db.key" "$3"' _ "$code" "$keys" "$work/db.key.before"
detail="$(cd "$keys" && sha256sum -c "$work/before.sha256" 2>&1 | grep -c FAILED)"
check "--force wrote new keys, kept the owner GUID" bash -c \
    'cd "$1" && ! sha256sum -c --quiet "$2" >/dev/null 2>&1 && [ "$(cat GUID.txt)" = "$3" ]' _ "$keys" "$work/before.sha256" "$guid"

# Bad input: exit 2, nothing written.
expect_bad() { # expect_bad NAME WORDS_IN_MESSAGE ARGS...
    local name=$1 words=$2
    shift 2
    "$bin" keys generate "$@" >"$work/bad.out" 2>&1
    local code=$?
    detail="exit $code: $(cat "$work/bad.out")"
    check "$name: exit 2" test "$code" -eq 2
    detail="$(cat "$work/bad.out")"
    check "$name: the message says $words" grep -q -- "$words" "$work/bad.out"
}
printf 'not a certificate\n' >"$work/garbage.crt"
expect_bad "--include-cert of a file that is no certificate" "garbage.crt: neither an X.509" \
    --include-cert "db=$work/garbage.crt" --keys "$work/bad6"
expect_bad "--include-cert to PK" "use KEK, db or dbx" --include-cert "PK=$work/garbage.crt" \
    --keys "$work/bad7"
expect_bad "--include-cert without VARIABLE=" "VARIABLE=FILE" --include-cert "$work/garbage.crt" \
    --keys "$work/bad8"
{ cat "$keys/db.pem"; printf -- '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n'; \
    cat "$keys/KEK.pem"; } >"$work/damaged.pem"
expect_bad "--include-cert with a damaged second certificate" "damaged.pem: certificate 2 cannot be read" \
    --include-cert "db=$work/damaged.pem" --keys "$work/bad10"
mkdir -p "$work/certdir" && touch "$work/certdir/notes.txt"
expect_bad "--include-cert-dir with a stray file" "notes.txt: not a certificate source" \
    --include-cert-dir "$work/certdir" --keys "$work/bad9"
touch "$work/a-file"
expect_bad "a key directory that is a file" "not a directory" --keys "$work/a-file"
expect_bad "--days 0" "--days" --days 0 --keys "$work/bad1"
expect_bad "--days 36501" "36500" --days 36501 --keys "$work/bad2"
expect_bad "an empty --org" "--org" --org "" --keys "$work/bad3"
expect_bad "a 65-character --org" "--org" --org "$(printf 'a%.0s' {1..65})" --keys "$work/bad4"
expect_bad "--key-type ec" "rsa4096" --key-type ec --keys "$work/bad5"
detail="$(ls -d "$work"/bad? 2>&1)"
check "bad input wrote no key directory" bash -c '! ls -d "$1"/bad? "$1"/bad?? >/dev/null 2>&1' _ "$work"
if [ "$(id -u)" -ne 0 ]; then
    mkdir -p "$work/readonly" && chmod 555 "$work/readonly"
    expect_bad "an unwritable key directory" "not writable" --keys "$work/readonly"
    chmod 755 "$work/readonly"
fi

# Certificates of others (Microsoft's UEFI CA, a vendor) and firmware-exported lists, added to
# KEK, db and dbx: the same bytes efitools makes by appending their lists and signing the whole.
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/vendor.key" -out "$work/vendor.pem" \
    -subj /CN=vendor -days 2 >/dev/null 2>&1
openssl x509 -in "$work/vendor.pem" -outform der -out "$work/vendor.der"
mkdir -p "$work/exported/db"
cert-to-efi-sig-list -g 77fa9abd-0359-4d32-bd60-28f4e78f784b "$work/vendor.pem" \
    "$work/exported/KEK" >/dev/null
cp "$work/vendor.der" "$work/exported/db/vendor.der"
"$bin" keys generate --org ACME --keys "$work/extra" --include-cert-dir "$work/exported" \
    --include-cert "db=$work/vendor.pem" --include-cert "dbx=$work/vendor.der" \
    >"$work/extra.out" 2>&1
code=$?
detail="exit $code: $(cat "$work/extra.out")"
check "keys generate --include-cert-dir --include-cert succeeds" test "$code" -eq 0
check "the summary lists what was added" grep -q "added to dbx: .*vendor.der (1 certificate)" \
    "$work/extra.out"
xguid=$(cat "$work/extra/GUID.txt")
cert-to-efi-sig-list -g "$xguid" "$work/extra/KEK.pem" "$work/own-KEK.esl" >/dev/null
cert-to-efi-sig-list -g "$xguid" "$work/extra/db.pem" "$work/own-db.esl" >/dev/null
cert-to-efi-sig-list -g "$xguid" "$work/vendor.pem" "$work/vendor.esl" >/dev/null
cat "$work/own-KEK.esl" "$work/exported/KEK" >"$work/want-KEK.esl"
cat "$work/own-db.esl" "$work/vendor.esl" "$work/vendor.esl" >"$work/want-db.esl"
for name in KEK db; do
    detail="$(cmp "$work/want-$name.esl" "$work/extra/$name.esl" 2>&1)"
    check "$name.esl is its own list followed by the added ones (owners kept)" \
        cmp -s "$work/want-$name.esl" "$work/extra/$name.esl"
done
detail="$(cmp "$work/vendor.esl" "$work/extra/dbx.esl" 2>&1)"
check "dbx.esl holds the revoked certificate" cmp -s "$work/vendor.esl" "$work/extra/dbx.esl"
for triple in "KEK PK" "db KEK" "dbx KEK"; do
    set -- $triple
    sign-efi-sig-list -t "2023-11-14 22:13:20" -k "$work/extra/$2.key" -c "$work/extra/$2.pem" \
        "$1" "$work/extra/$1.esl" "$work/extra-$1.auth" >/dev/null
    detail="$(cmp "$work/extra-$1.auth" "$work/extra/$1.auth" 2>&1)"
    check "$1.auth with the added lists equals sign-efi-sig-list's, signed by $2" \
        cmp -s "$work/extra-$1.auth" "$work/extra/$1.auth"
done
mkdir -p "$work/certs2" && (cd "$work/certs2" && sig-list-to-certs "$work/extra/db.esl" db >/dev/null)
detail="$(ls "$work/certs2")"
check "sig-list-to-certs reads three certificates out of db.esl" test -s "$work/certs2/db-2.der"
"$bin" keys generate --org ACME --keys "$work/extra" --force >/dev/null 2>&1
detail="$(ls "$work/extra")"
check "regenerating without dbx removes the old dbx files" test ! -e "$work/extra/dbx.auth"

# Bring your own keys (CanvOS's UKI_BRING_YOUR_OWN_KEYS): PK/KEK/db pairs in CanvOS's
# secure-boot/ layout become a key directory whose enrolment files efitools would make the same.
byok=$work/byok
mkdir -p "$byok/private-keys" "$byok/public-keys"
cp "$keys"/{PK,KEK,db}.key "$keys/tpm2-pcr-private.pem" "$byok/private-keys/"
cp "$keys"/{PK,KEK,db}.pem "$byok/public-keys/"
"$bin" keys import --from "$byok" --keys "$work/imported" --include-cert "db=$work/vendor.pem" \
    >"$work/import.out" 2>&1
code=$?
detail="exit $code: $(cat "$work/import.out")"
check "keys import --from a CanvOS secure-boot/ layout succeeds" test "$code" -eq 0
check "the summary names the layout and the kept PCR key" \
    bash -c 'grep -q "CanvOS secure-boot/ layout" "$1" && grep -q "TPM PCR policy key: yours" "$1"' \
    _ "$work/import.out"
for name in PK.key KEK.key db.key PK.pem db.pem tpm2-pcr-private.pem; do
    check "imported $name is yours, unchanged" cmp -s "$work/imported/$name" \
        "$byok/$([ "${name##*.}" = pem ] && [ "$name" != tpm2-pcr-private.pem ] && echo public-keys || echo private-keys)/$name"
done
iguid=$(cat "$work/imported/GUID.txt")
cert-to-efi-sig-list -g "$iguid" "$keys/db.pem" "$work/imp-db.esl" >/dev/null
cert-to-efi-sig-list -g "$iguid" "$work/vendor.pem" "$work/imp-vendor.esl" >/dev/null
cat "$work/imp-db.esl" "$work/imp-vendor.esl" >"$work/imp-want-db.esl"
detail="$(cmp "$work/imp-want-db.esl" "$work/imported/db.esl" 2>&1)"
check "imported db.esl is your certificate and the added one" \
    cmp -s "$work/imp-want-db.esl" "$work/imported/db.esl"
for triple in "PK PK" "KEK PK" "db KEK"; do
    set -- $triple
    sign-efi-sig-list -t "2023-11-14 22:13:20" -k "$keys/$2.key" -c "$keys/$2.pem" "$1" \
        "$work/imported/$1.esl" "$work/imp-$1.auth" >/dev/null
    detail="$(cmp "$work/imp-$1.auth" "$work/imported/$1.auth" 2>&1)"
    check "imported $1.auth equals sign-efi-sig-list's, signed by your $2" \
        cmp -s "$work/imp-$1.auth" "$work/imported/$1.auth"
done
cp "$byok/private-keys/KEK.key" "$byok/private-keys/db.key"
rm "$byok/public-keys/PK.pem"
"$bin" keys import --from "$byok" --keys "$work/imported2" >"$work/import-bad.out" 2>&1
code=$?
detail="exit $code: $(cat "$work/import-bad.out")"
check "keys import of a mixed pair and a missing certificate exits 2" test "$code" -eq 2
check "the error names the mixed pair and the missing file" \
    bash -c 'grep -q "private-keys/db.key is not the private key of .*public-keys/db.pem" "$1" &&
             grep -q "public-keys/PK.pem is missing" "$1"' _ "$work/import-bad.out"
check "the refused import wrote nothing" test ! -e "$work/imported2"

# The default key directory: secureboot-keys/ next to edgeforge.yaml (-c), else the working
# directory.
mkdir -p "$work/project" "$work/elsewhere"
printf 'name: demo\n' >"$work/project/edgeforge.yaml"
(cd "$work/elsewhere" && "$bin" -c "$work/project/edgeforge.yaml" keys generate --org ACME) >"$work/default.out" 2>&1
detail="$(cat "$work/default.out")"
check "with -c the keys go next to edgeforge.yaml" test -s "$work/project/secureboot-keys/db.auth"
(cd "$work/elsewhere" && "$bin" keys generate --org ACME) >"$work/cwd.out" 2>&1
detail="$(cat "$work/cwd.out")"
check "without -c the keys go into the working directory" test -s "$work/elsewhere/secureboot-keys/db.auth"

finish keys

#!/usr/bin/env bash
# Checks an image built by deploy/oci/build.sh without running a container
# (this needs no runtime, no privileges beyond chroot, and no network):
#
#   1. its config: user 65532:65532, entrypoint, command, exposed ports,
#      health check `turnd health`, stop signal, the OCI labels;
#   2. its files, exactly: the binary, the libraries the binary links (ldd),
#      the config, /etc/passwd and /etc/group, the libraries' copyright
#      files; all owned by root, none writable by others, none setuid; no
#      shell;
#   3. its binary, run from the unpacked root filesystem (chroot as user
#      65532 when run as root, else through the image's own dynamic loader
#      and libraries): `turnd check` accepts the image's config, the server
#      answers a STUN Binding with the client's address, and `turnd health`
#      gets 200 from /healthz.
#
#   deploy/oci/check.sh IMAGE
set -euo pipefail

image=${1:?usage: deploy/oci/check.sh IMAGE}
cd "$(dirname "$0")/../.."
uid=65532
work=$(mktemp -d)
server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "check.sh: $*" >&2; exit 1; }

echo "--- $image: config"
buildah inspect --type image "$image" > "$work/inspect.json"
python3 - "$work/inspect.json" "$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)" <<'PY'
import json, sys
inspect = json.load(open(sys.argv[1]))
version = sys.argv[2]
config = inspect["Docker"]["config"]
errors = []
def want(what, got, expected):
    if got != expected:
        errors.append(f"{what}: {got!r}, expected {expected!r}")
want("User", config.get("User"), "65532:65532")
want("Entrypoint", config.get("Entrypoint"), ["/usr/bin/turnd"])
want("Cmd", config.get("Cmd"), ["--config", "/etc/turnd/turnd.toml"])
want("ExposedPorts", sorted(config.get("ExposedPorts") or {}), ["3478/tcp", "3478/udp", "9641/tcp"])
want("StopSignal", config.get("StopSignal"), "SIGTERM")
want("Env", config.get("Env") or [], [])
want("Healthcheck.Test", (config.get("Healthcheck") or {}).get("Test"), ["CMD", "/usr/bin/turnd", "health"])
labels = config.get("Labels") or {}
want("label version", labels.get("org.opencontainers.image.version"), version)
want("label licenses", labels.get("org.opencontainers.image.licenses"), "MIT OR Apache-2.0")
want("label title", labels.get("org.opencontainers.image.title"), "turnd")
for key in ("source", "revision", "created", "description"):
    if not labels.get(f"org.opencontainers.image.{key}"):
        errors.append(f"label org.opencontainers.image.{key} missing")
extra = sorted(k for k in labels if not k.startswith("org.opencontainers.image."))
if extra:
    errors.append(f"unexpected labels {extra}")
if errors:
    sys.exit("image config:\n  " + "\n  ".join(errors))
print("config ok:", json.dumps({"User": config["User"], "ExposedPorts": sorted(config["ExposedPorts"]), "Healthcheck": config["Healthcheck"]["Test"]}))
PY

echo "--- $image: files"
buildah push --quiet --format v2s2 "$image" "dir:$work/image"
rootfs="$work/rootfs"
mkdir -p "$rootfs"
python3 -c 'import json,sys; [print(l["digest"].split(":")[1]) for l in json.load(open(sys.argv[1]))["layers"]]' \
    "$work/image/manifest.json" > "$work/layers"
: > "$work/listing"
while read -r layer; do
    tar -tvf "$work/image/$layer" >> "$work/listing"
    tar --numeric-owner -xpf "$work/image/$layer" -C "$rootfs"
done < "$work/layers"
# Regular files and symlinks in the image, against what must be there.
(cd "$rootfs" && find . \( -type f -o -type l \) | sed 's|^\.||' | sort) > "$work/files"
{
    echo /etc/group
    echo /etc/passwd
    echo /etc/turnd/turnd.toml
    echo /usr/bin/turnd
    ldd "$rootfs/usr/bin/turnd" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'
    find "$rootfs/usr/share/doc" -name copyright 2>/dev/null | sed "s|^$rootfs||"
} | sort -u > "$work/expected"
diff -u "$work/expected" "$work/files" || fail "the image's files differ from the expected list (- expected, + in the image)"
[ "$(grep -c /copyright "$work/files")" -ge 1 ] || fail "no copyright file for the bundled libraries"
for shell in /bin/sh /bin/bash /usr/bin/sh /bin/busybox; do
    [ ! -e "$rootfs$shell" ] || fail "the image has a shell: $shell"
done
awk '$2 != "0/0" { print "not owned by root:", $0; bad = 1 } END { exit bad }' "$work/listing" \
    || fail "files not owned by root"
[ -z "$(find "$rootfs" -perm /6000 -o -perm -0002 ! -type l)" ] || fail "setuid/setgid or world-writable files in the image"
cmp -s config/turnd.toml "$rootfs/etc/turnd/turnd.toml" || fail "/etc/turnd/turnd.toml is not config/turnd.toml"
grep -q "^turnd:x:$uid:$uid:" "$rootfs/etc/passwd" || fail "/etc/passwd names no turnd user $uid"
echo "files ok: $(wc -l < "$work/files") files, $(du -sh "$rootfs" | cut -f1)"

echo "--- $image: the binary, run from the unpacked root filesystem"
# A directory for the ready file, writable by the image's user (in this
# scratch copy only, not in the image).
mkdir -p "$rootfs/run/turnd"
chown "$uid:$uid" "$rootfs/run/turnd"
if [ "$(id -u)" -eq 0 ] && command -v chroot >/dev/null 2>&1; then
    echo "(chroot as $uid:$uid)"
    run=(chroot --userspec="$uid:$uid" "$rootfs" /usr/bin/turnd)
    in_path() { echo "$1"; }
else
    # Not root: the image's own loader with only the image's libraries.
    loader=$(ldd "$rootfs/usr/bin/turnd" | awk '$1 ~ /^\// { print $1 }' | head -n 1)
    libdirs=$(ldd "$rootfs/usr/bin/turnd" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' \
        | xargs -n1 dirname | sort -u | sed "s|^|$rootfs|" | paste -sd:)
    echo "(not root: $loader of the image, --library-path $libdirs)"
    run=("$rootfs$loader" --inhibit-cache --library-path "$libdirs" "$rootfs/usr/bin/turnd")
    in_path() { echo "$rootfs$1"; }
fi
config=$(in_path /etc/turnd/turnd.toml)

"${run[@]}" check --config "$config" || fail "turnd check refuses the image's config"

# The image's config as shipped, with loopback listeners from the
# environment (the TURND_* overrides a container or a DaemonSet would set).
TURND_LISTEN_UDP=127.0.0.1:0 TURND_LISTEN_TCP=127.0.0.1:0 TURND_HTTP_LISTEN=127.0.0.1:0 \
    "${run[@]}" --config "$config" --ready-file "$(in_path /run/turnd/ready.json)" \
    > "$work/server.log" 2>&1 &
server_pid=$!
ready="$rootfs/run/turnd/ready.json"
for _ in $(seq 1 100); do
    [ -s "$ready" ] && python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$ready" 2>/dev/null && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log"; fail "turnd exited before it was ready"; }
    sleep 0.1
done
[ -s "$ready" ] || { cat "$work/server.log"; fail "no ready file within 10 s"; }
udp=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["udp"][0])' "$ready")
http=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["http"])' "$ready")

python3 - "$udp" <<'PY'
# A STUN Binding request (RFC 8489 §5): the success response's
# XOR-MAPPED-ADDRESS must be this socket's address.
import os, socket, struct, sys
host, port = sys.argv[1].rsplit(":", 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
s.settimeout(2)
txid = os.urandom(12)
request = struct.pack("!HHI", 0x0001, 0, 0x2112A442) + txid
for attempt in range(3):
    s.sendto(request, (host, int(port)))
    try:
        data, _ = s.recvfrom(2048)
        break
    except socket.timeout:
        continue
else:
    sys.exit(f"no Binding response from {host}:{port}")
mtype, length, cookie = struct.unpack("!HHI", data[:8])
assert mtype == 0x0101, f"not a Binding success response: {mtype:#06x}"
assert data[8:20] == txid, "transaction ID differs"
pos, mapped = 20, None
while pos + 4 <= 20 + length:
    atype, alen = struct.unpack("!HH", data[pos:pos + 4])
    value = data[pos + 4:pos + 4 + alen]
    if atype == 0x0020 and value[1] == 0x01:
        xport = struct.unpack("!H", value[2:4])[0] ^ 0x2112
        xip = struct.unpack("!I", value[4:8])[0] ^ 0x2112A442
        mapped = (socket.inet_ntoa(struct.pack("!I", xip)), xport)
    pos += 4 + alen + (-alen % 4)
assert mapped == s.getsockname(), f"XOR-MAPPED-ADDRESS {mapped} != {s.getsockname()}"
print(f"Binding answered: XOR-MAPPED-ADDRESS {mapped[0]}:{mapped[1]}")
PY

"${run[@]}" health --address "$http" || fail "turnd health: /healthz did not answer 200"
"${run[@]}" health --address "$http" --ready || fail "turnd health --ready: /readyz did not answer 200"

kill -TERM "$server_pid"
wait "$server_pid" || { cat "$work/server.log"; fail "turnd did not exit cleanly on SIGTERM"; }
server_pid=""
echo "--- $image: ok"

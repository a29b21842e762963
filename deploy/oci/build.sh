#!/usr/bin/env bash
# Builds turnd's OCI image from scratch, offline: no base image is pulled.
# The image holds the release binary, exactly the shared libraries it links
# (found with ldd, with their Debian copyright files), the reference config
# as /etc/turnd/turnd.toml, and /etc/passwd and /etc/group naming the
# non-root user turnd (65532). No shell, no package manager, no curl: the
# health check is `turnd health`. Every file and the image's creation time
# take the commit's timestamp (SOURCE_DATE_EPOCH), so the same binary gives
# the same image ID.
#
#   deploy/oci/build.sh [--binary PATH] [--tag NAME] [--archive FILE]
#
#   --binary PATH   use this turnd binary instead of `cargo build --release --locked`
#   --tag NAME      image name [default: localhost/turnd:VERSION]
#   --archive FILE  also write the image as an archive (for `podman load`
#                   on a machine without registry access)
#
# Prints the image ID on the last line. deploy/oci/check.sh inspects the
# result; deploy/oci/Containerfile is the same image for people with a
# registry (a multi-stage build on Debian images).
#
# Needs buildah (Debian package buildah) and ldd (libc-bin). Run as root or
# where buildah can use user namespaces.
set -euo pipefail

cd "$(dirname "$0")/../.."

binary=""
tag=""
archive=""
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary="$2"; shift 2 ;;
        --tag) tag="$2"; shift 2 ;;
        --archive) archive="$2"; shift 2 ;;
        -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
        *) echo "build.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
licenses=$(sed -n 's/^license = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
description=$(sed -n 's/^description = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
# The image's source: IMAGE_SOURCE, else the clone's origin remote.
source_url=${IMAGE_SOURCE:-$(git remote get-url origin 2>/dev/null || echo "")}
: "${source_url:=local clone at revision $revision}"
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)
: "${tag:=localhost/turnd:$version}"

if [ -z "$binary" ]; then
    echo "--- cargo build --release --locked" >&2
    cargo build --release --locked --bin turnd >&2
    binary=target/release/turnd
fi
[ -x "$binary" ] || { echo "build.sh: $binary is not an executable" >&2; exit 1; }

# The user the server runs as (distroless' "nonroot" number).
uid=65532

root=$(mktemp -d)
ctr=""
cleanup() {
    rm -rf "$root" "$root.image"
    if [ -n "$ctr" ]; then buildah rm "$ctr" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

install -D -m 0755 "$binary" "$root/usr/bin/turnd"
install -D -m 0644 config/turnd.toml "$root/etc/turnd/turnd.toml"
printf 'root:x:0:0:root:/root:/sbin/nologin\nturnd:x:%s:%s:turnd:/nonexistent:/sbin/nologin\n' \
    "$uid" "$uid" > "$root/etc/passwd"
printf 'root:x:0:\nturnd:x:%s:\n' "$uid" > "$root/etc/group"
chmod 0644 "$root/etc/passwd" "$root/etc/group"

# Every library ldd resolves, and the dynamic loader, at the path the
# loader looks for it (the file's content, not the symlink), with the
# copyright file of the Debian package that ships it.
libs=$(ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u)
[ -n "$libs" ] || { echo "build.sh: ldd found no library for $binary (a static binary needs none: remove this check)" >&2; exit 1; }
for lib in $libs; do
    install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
    if command -v dpkg-query >/dev/null 2>&1; then
        pkg=$(dpkg-query -S "$lib" 2>/dev/null | head -n 1 | cut -d: -f1) \
            || pkg=$(dpkg-query -S "$(readlink -f "$lib")" 2>/dev/null | head -n 1 | cut -d: -f1) || true
        if [ -n "${pkg:-}" ] && [ -f "/usr/share/doc/$pkg/copyright" ]; then
            install -D -m 0644 "/usr/share/doc/$pkg/copyright" "$root/usr/share/doc/$pkg/copyright"
        fi
    fi
done

# Same owner and time on every entry, so the layer depends on content only.
find "$root" -exec touch -h -d "@$epoch" {} +
chown -R 0:0 "$root"

echo "--- buildah: from scratch, $tag" >&2
ctr=$(buildah from --format docker scratch)
buildah copy --quiet "$ctr" "$root/" / >/dev/null
buildah config \
    --user "$uid:$uid" \
    --workingdir / \
    --entrypoint '["/usr/bin/turnd"]' \
    --cmd '["--config", "/etc/turnd/turnd.toml"]' \
    --stop-signal SIGTERM \
    --port 3478/udp --port 3478/tcp --port 9641/tcp \
    --healthcheck 'CMD /usr/bin/turnd health' \
    --healthcheck-interval 30s --healthcheck-timeout 5s \
    --healthcheck-start-period 10s --healthcheck-retries 3 \
    --label "org.opencontainers.image.title=turnd" \
    --label "org.opencontainers.image.description=$description" \
    --label "org.opencontainers.image.version=$version" \
    --label "org.opencontainers.image.revision=$revision" \
    --label "org.opencontainers.image.source=$source_url" \
    --label "org.opencontainers.image.licenses=$licenses" \
    --label "org.opencontainers.image.created=$created" \
    "$ctr"
# Docker format: the OCI image config has no field for HEALTHCHECK, and
# podman and docker run it only from this format. Either format runs
# everywhere (containerd, CRI-O, Kubernetes).
buildah commit --quiet --rm --format docker --identity-label=false --omit-history \
    --timestamp "$epoch" "$ctr" "$tag" >/dev/null
ctr=""
# buildah writes the build container's random ID and hostname into the
# Docker config ("container", "Hostname"): blank them and re-import, so the
# image ID (the config's digest) depends on the inputs only.
layout="$root.image"
rm -rf "$root"
buildah push --quiet --format v2s2 "$tag" "dir:$layout"
python3 - "$layout" <<'PY'
import hashlib, json, os, sys
d = sys.argv[1]
manifest_path = os.path.join(d, "manifest.json")
manifest = json.load(open(manifest_path))
old = manifest["config"]["digest"].split(":", 1)[1]
config = json.load(open(os.path.join(d, old)))
config.pop("container", None)
for key in ("config", "container_config"):
    if isinstance(config.get(key), dict):
        config[key]["Hostname"] = ""
blob = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
new = hashlib.sha256(blob).hexdigest()
os.remove(os.path.join(d, old))
with open(os.path.join(d, new), "wb") as f:
    f.write(blob)
manifest["config"]["digest"] = "sha256:" + new
manifest["config"]["size"] = len(blob)
with open(manifest_path, "w") as f:
    json.dump(manifest, f, separators=(",", ":"))
PY
buildah rmi "$tag" >/dev/null
id=$(buildah pull --quiet "dir:$layout")
rm -rf "$layout"
buildah tag "$id" "$tag"

if [ -n "$archive" ]; then
    rm -f "$archive"
    buildah push --quiet --format v2s2 "$tag" "docker-archive:$archive:$tag" >&2
    echo "--- wrote $archive (podman load -i $archive)" >&2
fi
echo "--- built $tag" >&2
echo "$id"

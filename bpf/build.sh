#!/usr/bin/env bash
# Rebuilds bpf/turnd_xdp.o from bpf/turnd_xdp.c (the object is checked in
# and embedded in turnd with include_bytes!, so building turnd needs no
# clang). Needs clang and the kernel UAPI + libbpf headers (Debian: clang,
# libbpf-dev).
#
#   bpf/build.sh           rebuild bpf/turnd_xdp.o in place
#   bpf/build.sh --check   rebuild into a temporary file and compare with
#                          the checked-in object (exit 1 if they differ)
#
# The output is deterministic for a given clang version (no debug info, no
# BTF, no paths or timestamps in the object); bpf/CLANG_VERSION records the
# one the checked-in object was built with. With another clang, --check
# reports the difference as a notice, not a failure: the loader test
# (src/net/offload/elf.rs) and tests/daemon/offload.rs still check the object.
set -euo pipefail
cd "$(dirname "$0")"

arch_include=/usr/include/$(uname -m)-linux-gnu
build() {
    clang -O2 -g0 -target bpf -I"$arch_include" -Wall -Werror -c turnd_xdp.c -o "$1"
}

version=$(clang --version | head -n 1)
if [ "${1:-}" = "--check" ]; then
    tmp=$(mktemp --suffix=.o)
    trap 'rm -f "$tmp"' EXIT
    build "$tmp"
    if cmp -s "$tmp" turnd_xdp.o; then
        echo "bpf/turnd_xdp.o matches bpf/turnd_xdp.c ($version)"
        exit 0
    fi
    if [ "$version" = "$(cat CLANG_VERSION)" ]; then
        echo "bpf/turnd_xdp.o differs from a fresh build of bpf/turnd_xdp.c with the same clang: run bpf/build.sh and commit" >&2
        exit 1
    fi
    echo "notice: bpf/turnd_xdp.o was built with $(cat CLANG_VERSION); this is $version, whose output differs. Using the checked-in object."
    exit 0
fi
build turnd_xdp.o
echo "$version" > CLANG_VERSION
echo "built bpf/turnd_xdp.o with $version"

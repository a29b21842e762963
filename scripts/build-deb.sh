#!/usr/bin/env bash
# Builds the Debian package: the release binary, then from it the man pages
# (`turnd man --dir`), the shell completions (`turnd completions`), then
# `cargo deb --no-build`, which packs them with the rest of
# [package.metadata.deb] in Cargo.toml (deploy/debian/changelog becomes
# /usr/share/doc/turnd/changelog.Debian.gz).
#
#   scripts/build-deb.sh [OUTPUT_DIR]      (default: target/debian)
#
# Needs cargo-deb (`cargo install cargo-deb`); .ci/run installs it.
set -euo pipefail

cd "$(dirname "$0")/.."
out=${1:-target/debian}

cargo build --release --locked
turnd=target/release/turnd
assets=target/package-assets
rm -rf "$assets"
mkdir -p "$assets/man" "$assets/completions"

"$turnd" man --dir "$assets/man"
# -n: no name or time stamp in the gzip header, so builds are reproducible.
gzip -9n "$assets"/man/*.1
"$turnd" completions bash > "$assets/completions/turnd"
"$turnd" completions zsh > "$assets/completions/_turnd"
"$turnd" completions fish > "$assets/completions/turnd.fish"

mkdir -p "$out"
cargo deb --locked --no-build --output "$out"

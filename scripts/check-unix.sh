#!/usr/bin/env bash
# Checks that herd (herd-core, herd-sys, herd and the herd binary) still compiles for the other
# Unixes it keeps compiling, FreeBSD and macOS: `cargo check`, no link, so no SDK is needed.
# The Rust of scripts/windows-toolchain.sh brings the standard library's source, which
# `-Zbuild-std` checks for each target (RUSTC_BOOTSTRAP: that flag is unstable). Its own target
# directory (HERD_UNIX_TARGET_DIR, default target/unix). Errors fail; warnings (code only Linux
# uses) are shown.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=/dev/null
. "$("$root/scripts/windows-toolchain.sh")"
export CARGO_TARGET_DIR="${HERD_UNIX_TARGET_DIR:-$root/target/unix}"
export RUSTC_BOOTSTRAP=1
cd "$root"
for target in x86_64-unknown-freebsd x86_64-apple-darwin; do
    start=$(date +%s)
    cargo check --locked --quiet --message-format short --target "$target" -Zbuild-std=std,panic_abort \
        -p herd-core -p herd-sys -p herd -p herd-cli --lib --bins
    echo "check-unix: $target compiles ($(( $(date +%s) - start )) s)"
done

#!/usr/bin/env bash
# Checks that herd (herd-core, herd-sys, herd and the herd binary) still compiles for the other
# Unixes it keeps compiling, FreeBSD and macOS: `cargo check`, no link, so no SDK is needed.
# The Rust of scripts/windows-toolchain.sh brings the standard library's source, which
# `-Zbuild-std` checks for each target (RUSTC_BOOTSTRAP: that flag is unstable). Its own target
# directory (HERD_UNIX_TARGET_DIR, default target/unix). Errors and warnings in herd's code fail.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=/dev/null
. "$("$root/scripts/windows-toolchain.sh")"
export CARGO_TARGET_DIR="${HERD_UNIX_TARGET_DIR:-$root/target/unix}"
export RUSTC_BOOTSTRAP=1
cd "$root"
status=0
for target in x86_64-unknown-freebsd x86_64-apple-darwin; do
    start=$(date +%s)
    out=$(cargo check --locked --quiet --message-format short --target "$target" \
        -Zbuild-std=std,panic_abort -p herd-core -p herd-sys -p herd -p herd-cli --lib --bins 2>&1) \
        || { echo "$out"; echo "check-unix: $target does not compile" >&2; status=1; continue; }
    # Warnings in herd's own code fail too (RUSTFLAGS would also fail the std it builds).
    if grep -E '^crates/[^ ]+: warning:' <<<"$out"; then
        echo "check-unix: $target compiles with the warnings above (code only Linux uses wants a cfg)" >&2
        status=1
        continue
    fi
    echo "check-unix: $target compiles ($(( $(date +%s) - start )) s)"
done
exit "$status"

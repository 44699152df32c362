#!/usr/bin/env bash
# Builds and lints herd's Windows-facing crates (herd-core, herd-sys, herd and the herd binary)
# for x86_64-pc-windows-gnu with the toolchain of scripts/windows-toolchain.sh, and runs their
# tests under Wine: every test binary is a Windows exe, and the integration tests start the
# real herd.exe and worker exes, which Linux-side tools reach over loopback.
#
# Wine runs in a prefix of this checkout's own (HERD_WINEPREFIX, default target/windows/wine),
# with one wineserver started before the tests and stopped at the end. The build has its own
# target directory (HERD_WINDOWS_TARGET_DIR, default target/windows). Arguments go to
# `cargo test` instead of the default set (e.g. `scripts/check-windows.sh -p herd-cli --test
# windows`).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=/dev/null
. "$("$root/scripts/windows-toolchain.sh")"
target=x86_64-pc-windows-gnu
export CARGO_TARGET_DIR="${HERD_WINDOWS_TARGET_DIR:-$root/target/windows}"
export WINEPREFIX="${HERD_WINEPREFIX:-$CARGO_TARGET_DIR/wine}"
start=$(date +%s)

if [ ! -f "$WINEPREFIX/system.reg" ]; then
    echo "check-windows: creating the Wine prefix $WINEPREFIX" >&2
    mkdir -p "$WINEPREFIX"
    wine64 wineboot --init >/dev/null 2>&1 || true
    wineserver -w || true
fi
cmp -s "$HERD_WINE_SHIM" "$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll" \
    || cp "$HERD_WINE_SHIM" "$WINEPREFIX/drive_c/windows/system32/"
wineserver -p 2>/dev/null || true  # one server for every exe of the run (else one each)
trap 'wineserver -k 2>/dev/null || true' EXIT

echo "check-windows: $(rustc -V) for $target, under $(wine64 --version)" >&2
cd "$root"
# herd-sys's `tokio` feature (its secure named pipes) is on, so that its tests run too.
packages=(-p herd-core -p herd-sys -p herd -p herd-cli --features herd-sys/tokio)
# The Windows-only code has no other lint run. (This clippy 1.96 also flags logging/sink.rs's
# thread_local, which is const already: a false positive.) herd's `tokio` feature is Unix-only.
cargo clippy --locked --quiet --target $target "${packages[@]}" --all-targets -- -D warnings \
    -A clippy::missing_const_for_thread_local
# The Windows tests run the worker library's examples (herd's: win_prefork; herd-cli's: hello
# under herd.exe), which `cargo test` builds under hashed names only: build them by name, into
# target/windows/x86_64-pc-windows-gnu/debug/examples/.
cargo build --locked --quiet --target $target -p herd --examples
# Doc tests are the Linux run's: their examples are Unix programs.
args=("${packages[@]}" --lib --bins --tests --examples)
if (($#)); then
    args=("$@")
fi
# --no-fail-fast: a failing test binary does not hide the results of the ones after it.
cargo test --locked --quiet --no-fail-fast --target $target "${args[@]}"
echo "check-windows: done in $(($(date +%s) - start)) s" >&2

#!/usr/bin/env bash
# Sets up a modern Rust that cross-compiles herd for x86_64-pc-windows-gnu, and Wine 8 to run
# the result, on Debian 12. Idempotent and cached: the first run takes about a minute (71 s
# measured), a second one a few seconds. Prints the env file to source, then `cargo build
# --target x86_64-pc-windows-gnu` works, and `cargo test` runs the tests under Wine.
#
# Everything lands under $HERD_WINTOOL (default /var/cache/herd-wintool):
#   root/         Debian's rustc-web, cargo-web, clippy and rust-web-src (Rust 1.96), unpacked, not
#                 installed: rustc-web conflicts with Debian's rustc and with rustup, and the
#                 machine's own toolchains stay untouched
#   root/usr/lib/rustlib/x86_64-pc-windows-gnu/lib
#                 the Windows std, built once from that source with -Zbuild-std
#   shim/         bcryptprimitives.dll: Rust >= 1.78 imports ProcessPrng from it and Wine 8
#                 has none (every exe would fail to load with c0000135); copy it into a
#                 prefix's system32 (scripts/check-windows.sh does)
#   wineprefix/   a Wine prefix with the shim, for trying things by hand
#   env.sh        the environment: toolchain, linker, Wine runner, prefix
# Only the cross linker, Wine and the shared libraries the unpacked tools need are installed
# with apt, and only when missing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
W=${HERD_WINTOOL:-/var/cache/herd-wintool}
target=x86_64-pc-windows-gnu
mkdir -p "$W"
exec 9>"$W/.lock"
flock 9  # one setup at a time on this machine

say() { echo "windows-toolchain: $*" >&2; }
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive

apt_updated=""
apt_update_once() {
    [ -n "$apt_updated" ] && return
    $sudo apt-get update -qq
    apt_updated=1
}

# Installs those of the given Debian packages that are missing.
ensure_packages() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    say "installing ${missing[*]}"
    apt_update_once
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The shared libraries a .deb depends on (first of each alternative): not Rust's own, which
# are unpacked too, nor -dev packages (libc-dev is virtual; gcc's libc6-dev provides it).
deb_library_depends() {
    dpkg-deb -f "$1" Depends | tr ',' '\n' | sed 's/|.*//; s/(.*)//; s/ //g' \
        | grep '^lib' | grep -v -e '^libstd-rust' -e '-dev$' || true
}

# 1. The cross linker and Wine.
ensure_packages ca-certificates gcc libc6-dev gcc-mingw-w64-x86-64 wine64 wine

# 2. Debian's Rust 1.96, unpacked into root/ (replaced whole, never half, when the list of
#    packages changes).
rust_packages="rustc-web cargo-web rust-web-clippy rust-web-src libstd-rust-web-dev"
if [ "$(cat "$W/root/herd-packages" 2>/dev/null)" != "$rust_packages" ]; then
    say "unpacking Debian's $rust_packages"
    apt_update_once
    rm -rf "$W/debs" "$W/root.new"
    mkdir -p "$W/debs" "$W/root.new"
    # shellcheck disable=SC2086
    (cd "$W/debs" && apt-get download -qq -o APT::Sandbox::User=root $rust_packages)
    hoststd=$(dpkg-deb -f "$W"/debs/libstd-rust-web-dev_*.deb Depends | tr ',' '\n' \
        | sed -n 's/^ *\(libstd-rust-web-[0-9.]*\).*/\1/p' | head -1)
    (cd "$W/debs" && apt-get download -qq -o APT::Sandbox::User=root "$hoststd")
    for deb in "$W"/debs/*.deb; do dpkg-deb -x "$deb" "$W/root.new"; done
    echo "$rust_packages" >"$W/root.new/herd-packages"
    rm -rf "$W/root"
    mv "$W/root.new" "$W/root"
fi
# The shared libraries the unpacked rustc (LLVM) and cargo (curl, git2, ssl...) link to.
libs=()
for deb in "$W"/debs/*.deb; do
    mapfile -t -O "${#libs[@]}" libs < <(deb_library_depends "$deb")
done
ensure_packages $(printf '%s\n' "${libs[@]}" | sort -u)

# 3. The environment every other script sources.
cat > "$W/env.sh" <<ENV
# herd's Windows toolchain (scripts/windows-toolchain.sh): source this file.
export HERD_WINTOOL=$W
export PATH=$W/root/usr/bin:/usr/lib/wine:\$PATH
export LD_LIBRARY_PATH=$W/root/usr/lib/x86_64-linux-gnu  # librustc_driver (no rpath)
export RUSTC=$W/root/usr/bin/rustc RUSTDOC=$W/root/usr/bin/rustdoc CARGO=$W/root/usr/bin/cargo
export CARGO_HOME=$W/cargo-home
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=/usr/lib/wine/wine64
export HERD_WINE_SHIM=$W/shim/bcryptprimitives.dll
export WINEPREFIX=$W/wineprefix WINEDEBUG=-all WINEARCH=win64
unset DISPLAY RUSTUP_TOOLCHAIN RUSTFLAGS
ENV
# shellcheck source=/dev/null
. "$W/env.sh"
version=$(rustc -vV)
[ -d "$(rustc --print sysroot)/lib/rustlib/src/rust/library/std" ] || {
    say "no std source in $(rustc --print sysroot)"
    exit 1
}

# 4. The Windows std, built once per compiler, its rlibs dropped into the sysroot so that
#    projects need neither nightly flags nor RUSTC_BOOTSTRAP.
stdlib="$(rustc --print sysroot)/lib/rustlib/$target/lib"
if [ "$(cat "$stdlib/herd-std.stamp" 2>/dev/null)" != "$version" ]; then
    say "building the Windows std ($(rustc -V))"
    p="$W/stdbuild"
    rm -rf "$p"
    mkdir -p "$p/src"
    printf '[package]\nname = "stdbuild"\nversion = "0.0.0"\nedition = "2021"\n' >"$p/Cargo.toml"
    echo 'fn main() { println!("hello from {}", std::env::consts::OS); }' >"$p/src/main.rs"
    (cd "$p" && RUSTC_BOOTSTRAP=1 cargo test --release --no-run -q \
        -Zbuild-std=std,panic_abort,test --target $target \
        && RUSTC_BOOTSTRAP=1 cargo build --release -q -Zbuild-std=std,panic_abort,test --target $target)
    mkdir -p "$stdlib"
    cp "$p"/target/$target/release/deps/*.rlib "$stdlib/"
    echo "$version" >"$stdlib/herd-std.stamp"
fi

# 5. The shim, and a prefix that runs a Rust exe.
if [ ! -f "$HERD_WINE_SHIM" ] || [ "$here/wintool/bcryptprimitives.c" -nt "$HERD_WINE_SHIM" ]; then
    mkdir -p "$W/shim"
    x86_64-w64-mingw32-gcc -O2 -shared -o "$HERD_WINE_SHIM.new" "$here/wintool/bcryptprimitives.c" -lbcrypt
    mv "$HERD_WINE_SHIM.new" "$HERD_WINE_SHIM"
fi
if [ ! -f "$WINEPREFIX/system.reg" ]; then
    say "creating the Wine prefix $WINEPREFIX"
    wine64 wineboot --init >/dev/null 2>&1 || true
    wineserver -w || true
fi
cmp -s "$HERD_WINE_SHIM" "$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll" \
    || cp "$HERD_WINE_SHIM" "$WINEPREFIX/drive_c/windows/system32/"
if [ ! -f "$W/smoke.stamp" ] || [ "$stdlib/herd-std.stamp" -nt "$W/smoke.stamp" ]; then
    out=$(wine64 "$W/stdbuild/target/$target/release/stdbuild.exe")
    wineserver -k 2>/dev/null || true
    [ "$out" = "hello from windows" ] || { say "the smoke test printed '$out'"; exit 1; }
    touch "$W/smoke.stamp"
fi
say "ready: $(rustc -V), $(wine64 --version); . $W/env.sh"
echo "$W/env.sh"

#!/usr/bin/env bash
# Builds and tests the worker-side crates (herd, herd-sys, and herd-core, the supervisor core
# that herd's prefork and herd-cli share) for Linux with Debian's rustc 1.63, their declared
# rust-version. (Windows is scripts/check-windows.sh's, with a modern Rust.) They are copied
# into a workspace of their own, because the main workspace's other members need a newer Rust;
# scripts/msrv/Cargo.lock (lockfile v3, which cargo 1.65 reads) pins dependencies that still
# support 1.63 (libc 0.2.186 needs 1.65); `--update-lock` refreshes it after the crates'
# dependencies change.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

packages=(rustc cargo)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "check-msrv: installing ${missing[*]}" >&2
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

export CARGO_TARGET_DIR="${MSRV_TARGET_DIR:-$root/target/msrv}"
fresh=$(mktemp -d)
trap 'rm -rf "$fresh"' EXIT
work=$fresh
cp -r "$root/crates/herd-core" "$root/crates/herd" "$root/crates/herd-sys" "$work/"
# The main manifest's shared sections, with the members and paths of this smaller workspace.
sed -e 's|^members = .*|members = ["herd-core", "herd-sys", "herd"]|' -e '/^default-members/d' \
    -e 's|path = "crates/|path = "|' -e '/^\[profile/,$d' "$root/Cargo.toml" > "$work/Cargo.toml"
cp "$root/scripts/msrv/Cargo.lock" "$work/Cargo.lock"
# The optional `tokio` feature needs a newer Rust than 1.63 (tokio's own minimum): the check
# covers the library without it.
sed -i -e '/^tokio = /d' -e '/^tokio = \["dep:tokio"\]/d' -e '/^\[\[example\]\]/,/^required-features/d' \
    "$work/herd/Cargo.toml"
rm -f "$work"/herd/examples/tokio_*.rs
# herd-sys's optional `tokio` feature (`pidfd::ExitWatch`, for the Unix supervisor) likewise.
sed -i '/^tokio = /d' "$work/herd-sys/Cargo.toml"

# Built where the last run built, with only the files that changed since copied over (cargo
# judges by their times): a workspace made anew at each run was built anew, a minute each time.
built="$CARGO_TARGET_DIR/workspace"
mkdir -p "$built"
(cd "$fresh" && find . -type f) | while IFS= read -r file; do
    cmp -s "$fresh/$file" "$built/$file" || { mkdir -p "$(dirname "$built/$file")" && cp "$fresh/$file" "$built/$file"; }
done
(cd "$built" && find . -type f) | while IFS= read -r file; do
    [ -e "$fresh/$file" ] || rm -f "$built/$file"
done
work=$built

export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc CARGO_UNSTABLE_SPARSE_REGISTRY=true
export CARGO_HOME="${MSRV_CARGO_HOME:-${TMPDIR:-/tmp}/herd-msrv-cargo}"
echo "check-msrv: $(/usr/bin/rustc --version)" >&2
if [ "${1:-}" = "--update-lock" ]; then
    # Refresh the pinned lockfile after the crates' dependencies changed.
    # The newest that still build with 1.63: libc 0.2.186 needs 1.65; serde_derive 1.0.229 and
    # the proc-macro crates after these need 1.68 or 1.71.
    pins=(libc@0.2.180 serde@1.0.228 syn@2.0.106 quote@1.0.41 proc-macro2@1.0.103
          unicode-ident@1.0.22)
    (cd "$work" && /usr/bin/cargo update --quiet && for pin in "${pins[@]}"; do
        /usr/bin/cargo update --quiet -p "${pin%@*}" --precise "${pin#*@}"
    done)
    cp "$work/Cargo.lock" "$root/scripts/msrv/Cargo.lock"
fi
(cd "$work" && /usr/bin/cargo test --locked --quiet --workspace)
# herd-core's optional `serde` feature (the pool's saved state), which only herd-cli's Unix
# supervisor turns on: it builds with 1.63 too (serde's derive, pinned above).
(cd "$work" && /usr/bin/cargo test --locked --quiet -p herd-core --features serde)


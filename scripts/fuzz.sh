#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for a short while (HERD_FUZZ_SECONDS each, default 20) with
# cargo-fuzz and libFuzzer. cargo-fuzz wants a nightly compiler for its sanitizer flags; the
# stable toolchain accepts them with RUSTC_BOOTSTRAP=1, which is how this runs here. If the
# fuzzer cannot be installed or built, it says so and skips; a crash fails the run and leaves
# the input in fuzz/artifacts/TARGET/ (add it as a regression test).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${HERD_FUZZ_SECONDS:-20}"

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz" >&2
    if ! cargo install cargo-fuzz --locked --quiet; then
        echo "fuzz: SKIPPED: cannot install cargo-fuzz" >&2
        exit 0
    fi
fi
export RUSTC_BOOTSTRAP=1
# cargo-fuzz builds with one codegen unit and from scratch: herd-cli alone then took 4
# minutes on one core after any change to it. 16 units, kept between runs, take 30 s.
export CARGO_PROFILE_RELEASE_INCREMENTAL=true
build=(--codegen-units 16)
started=$SECONDS
if ! cargo fuzz build "${build[@]}" >/tmp/herd-fuzz-build.log 2>&1; then
    # Sanitizer coverage across units has failed to link before: then as cargo-fuzz would.
    echo "fuzz: the build with 16 codegen units failed; building with cargo-fuzz's defaults" >&2
    unset CARGO_PROFILE_RELEASE_INCREMENTAL
    build=()
    if ! cargo fuzz build >/tmp/herd-fuzz-build-defaults.log 2>&1; then
        echo "fuzz: SKIPPED: the fuzz targets do not build with this toolchain:" >&2
        tail -5 /tmp/herd-fuzz-build-defaults.log >&2
        exit 0
    fi
fi
echo "fuzz: built in $((SECONDS - started)) s"
status=0
for target in $(cargo fuzz list); do
    if cargo fuzz run "${build[@]}" "$target" -- -max_total_time="$seconds" >/tmp/herd-fuzz-"$target".log 2>&1; then
        runs=$(grep -oE "Done [0-9]+ runs" /tmp/herd-fuzz-"$target".log | tail -1)
        echo "fuzz: $target: ${runs:-done}, no crash in ${seconds}s"
    else
        echo "fuzz: $target: CRASH; see fuzz/artifacts/$target/ and /tmp/herd-fuzz-$target.log" >&2
        grep -E "panicked|SUMMARY" /tmp/herd-fuzz-"$target".log | head -5 >&2
        status=1
    fi
done
exit "$status"

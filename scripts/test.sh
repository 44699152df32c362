#!/usr/bin/env bash
# herd's whole test suite: formatting, lints, the worker crates under Rust 1.63 (Linux), the
# Windows build with its tests under Wine, FreeBSD and macOS compiling, the static musl build,
# unit, integration and doc tests, then a short fuzzing run. Ends with one summary line over
# every test binary: "tests: N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --all-features --quiet -- -D warnings

# Run as root (as CI is), the tests that need root must run: make their skip a failure.
if [ "$(id -u)" = 0 ]; then
    export HERD_REQUIRE_ROOT_TESTS=1
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
scripts/check-msrv.sh 2>&1 | tee "$log" || status=$?
scripts/check-windows.sh 2>&1 | tee -a "$log" || status=$?
# FreeBSD and macOS still compile (checked, not linked).
scripts/check-unix.sh 2>&1 | tee -a "$log" || status=$?
# Static herd and worker for musl (Alpine, scratch images), built and run.
scripts/check-musl.sh 2>&1 | tee -a "$log" || status=$?
# --no-fail-fast: a failing test binary does not hide the results of the ones after it.
cargo test --workspace --no-fail-fast 2>&1 | tee -a "$log" || status=$?
# deploy/: the Dockerfile, Kubernetes manifests and systemd units, checked offline.
scripts/check-deploy.sh 2>&1 | tee -a "$log" || status=$?
# The worker library's optional tokio feature.
cargo test -p herd --features tokio --lib 2>&1 | tee -a "$log" || status=$?
cargo test -p herd --features tokio --doc 2>&1 | tee -a "$log" || status=$?
# The benchmarks' pure arithmetic (window cutting, percentiles): Python's unittest.
python3 -m unittest discover -s bench -p 'test_*.py' 2>&1 | tee -a "$log" || status=$?
# python/herd_fork.py, the Python fork server's launcher, with real processes: Python's unittest.
python3 -m unittest discover -s python -p 'test_*.py' 2>&1 | tee -a "$log" || status=$?
# A short fuzzing run of every parser (HERD_SKIP_FUZZ=1 skips it).
if [ -z "${HERD_SKIP_FUZZ:-}" ]; then
    scripts/fuzz.sh || status=$?
fi
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"

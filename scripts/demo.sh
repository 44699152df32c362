#!/usr/bin/env bash
# herd's demo: 4 copies of examples/hello.py sharing 127.0.0.1:8080. Try it from another shell:
#     curl http://127.0.0.1:8080/
# Ctrl-C stops it gracefully.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --demo
cargo build --release --quiet
# Where cargo put it: target/ unless CARGO_TARGET_DIR or a cargo config moves it.
target=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
echo "demo: serving on http://127.0.0.1:8080/ -- try: for i in 1 2 3 4; do curl -s http://127.0.0.1:8080/; done" >&2
exec "$target/release/herd" run --workers 4 --bind http=127.0.0.1:8080,nonblocking -- python3 examples/hello.py

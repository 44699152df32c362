#!/usr/bin/env bash
# Builds herd and its native example worker as static binaries for x86_64-unknown-linux-musl
# (Alpine, `FROM scratch` images, and the scale benchmark's worker: see docs/scale.md), runs
# herd-sys's unit tests built with musl (its C library differs from glibc: some calls are
# stubs there), then runs the static herd with two static workers: one request served,
# `herd stop` clean. The target's standard library comes from rustup, once; where rustup is
# missing or cannot fetch it the check says so and is skipped (it counts no test then).
# Prints `test result:` lines like cargo's.
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-musl

if ! command -v rustup >/dev/null; then
    echo "check-musl: skipped: no rustup to install $target with" >&2
    exit 0
fi
if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
    if ! rustup target add "$target" >&2; then
        echo "check-musl: skipped: rustup could not install $target (no network?); run \`rustup target add $target\`" >&2
        exit 0
    fi
fi
cargo test --quiet --target "$target" -p herd-sys --lib
cargo build --quiet --target "$target" -p herd-cli --bin herd
cargo build --quiet --target "$target" -p herd --example hello
bin=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/$target/debug
for program in "$bin/herd" "$bin/examples/hello"; do
    # A dynamic program names its loader (the ELF interpreter); a static one has none.
    if ! interpreter=$(python3 - "$program" <<'PY'
import struct, sys
with open(sys.argv[1], "rb") as f:
    def at(offset, layout):
        f.seek(offset)
        return struct.unpack(layout, f.read(struct.calcsize(layout)))
    magic, bits = at(0, "<4sB")
    assert magic == b"\x7fELF" and bits == 2, "not a 64-bit ELF file"
    phoff, = at(0x20, "<Q")
    size, count = at(0x36, "<HH")
    for i in range(count):
        kind, _, offset, _, _, length = at(phoff + i * size, "<IIQQQQ")
        if kind == 3:  # PT_INTERP
            f.seek(offset)
            print(f.read(length).rstrip(b"\0").decode())
PY
    ); then
        echo "check-musl: cannot read $program" >&2
        exit 1
    fi
    if [ -n "$interpreter" ]; then
        echo "check-musl: $program is not static: it needs $interpreter" >&2
        exit 1
    fi
done

work=$(mktemp -d)
herd_pid=""
cleanup() {
    if [ -n "$herd_pid" ]; then
        kill -KILL "$herd_pid" 2>/dev/null || true
        wait "$herd_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
control=$work/control.sock
"$bin/herd" --control "$control" run -w 2 -b http=127.0.0.1:0 --grace 5s -- "$bin/examples/hello" \
    >"$work/out" 2>"$work/err" </dev/null &
herd_pid=$!
# Bounded: herd and two workers ready within 10 s, or the check fails with herd's log.
status=""
deadline=$((SECONDS + 10))
while [ "$SECONDS" -lt "$deadline" ]; do
    if status=$("$bin/herd" --control "$control" status --json 2>/dev/null) &&
        python3 -c 'import json,sys; s=json.load(sys.stdin); sys.exit(sum(w["state"]=="ready" for w in s["workers"]) != 2)' <<<"$status"; then
        break
    fi
    status=""
    kill -0 "$herd_pid" 2>/dev/null || break
    sleep 0.05
done
if [ -z "$status" ]; then
    echo "check-musl: the static herd did not get two workers ready: $(tail -3 "$work/err")" >&2
    exit 1
fi
address=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["sockets"][0]["address"])' <<<"$status")
reply=$(curl --silent --show-error --max-time 5 "http://$address/") || {
    echo "check-musl: no answer from the static worker at $address: $(tail -3 "$work/err")" >&2
    exit 1
}
if ! "$bin/herd" --control "$control" stop >/dev/null; then
    echo "check-musl: \`herd stop\` failed: $(tail -3 "$work/err")" >&2
    exit 1
fi
code=0
wait "$herd_pid" || code=$?
herd_pid=""
if [ "$code" != 0 ]; then
    echo "check-musl: the static herd exited with $code after \`herd stop\`: $(tail -3 "$work/err")" >&2
    exit 1
fi
case "$reply" in
hello\ from\ pid*) ;;
*)
    echo "check-musl: the static worker answered \"$reply\", not its hello" >&2
    exit 1
    ;;
esac
echo "test result: ok. 1 passed; 0 failed (static herd and hello for $target)"

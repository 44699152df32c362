#!/usr/bin/env bash
# Checks deploy/ offline, as the test command does: the Dockerfile (COPY sources, .dockerignore,
# ENTRYPOINT, HEALTHCHECK, EXPOSE, USER against its herd config; no Docker needed, none is run),
# every Kubernetes manifest against the Kubernetes 1.30 and 1.37 schemas (kubernetes-validate,
# strict) and the KEDA ScaledObject against KEDA's CRD (deploy/schemas), the systemd units with
# `systemd-analyze verify`, every herd config they carry with `herd check`, and the timeouts
# against each other; runs those configs on loopback (ready, probes, drain, exit 0); then the
# check's negative tests (a copy of deploy/ with one mistake each must fail). Needs what
# scripts/setup.sh installs. Ends with a `test result:` line.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "check-deploy: needs Python 3.11 or later (tomllib)" >&2; exit 1; }
python3 -c 'import kubernetes_validate, jsonschema, yaml' 2>/dev/null \
    || { echo "check-deploy: kubernetes-validate is missing: run scripts/setup.sh" >&2; exit 1; }

cargo build --quiet -p herd-cli --bin herd
target_dir=$(cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
exec python3 scripts/deploycheck "$target_dir/debug/herd" .

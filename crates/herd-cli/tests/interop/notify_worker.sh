#!/bin/sh
# A shell-script worker that reports readiness with systemd-notify, then serves.
systemd-notify --ready --status="shell worker $$ ready"
PROBE_READY=0 exec python3 "$(dirname "$0")/../workers/probe.py"

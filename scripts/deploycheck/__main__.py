"""Checks deploy/ offline: the Dockerfile (deploy/docker), the Kubernetes manifests
(deploy/kubernetes: the Kubernetes schemas and KEDA's CRD), the systemd units (deploy/systemd:
systemd-analyze verify), each against the herd config it carries (`herd check`); runs those
configs on loopback; then the check's own negative tests and the unit tests of its pure
parts. Usage (as scripts/check-deploy.sh runs it):

    python3 scripts/deploycheck HERD_BINARY [REPOSITORY]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import dockerfile  # noqa: E402
import kube  # noqa: E402
import selftest  # noqa: E402
import smoke  # noqa: E402
import test_pure  # noqa: E402
import units  # noqa: E402


def check_all(root, herd, notes):
    """Every error in deploy/ under `root`, each once."""
    errors = dockerfile.check(root, herd) + kube.check(root, herd) + units.check(root, herd, notes)
    return list(dict.fromkeys(errors))


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: python3 scripts/deploycheck HERD_BINARY [REPOSITORY]")
    herd = os.path.abspath(sys.argv[1])
    root = sys.argv[2] if len(sys.argv) == 3 else os.getcwd()
    notes = []
    errors = check_all(root, herd, notes)
    for note in dict.fromkeys(notes):
        print(f"note: {note}")
    for error in errors:
        print(f"FAILED: {error}")
    checked = ["deploy/docker", "deploy/kubernetes (Kubernetes "
               + " and ".join(kube.KUBERNETES_VERSIONS) + ", KEDA's CRD)", "deploy/systemd"]
    passed, failed = (0, 1) if errors else (1, 0)
    if not errors:
        print(f"ok: {', '.join(checked)}")
    run_errors, oks = smoke.check(root, herd)
    for line in [f"ok: {ok}" for ok in oks] + [f"FAILED: {e}" for e in run_errors]:
        print(line)
    passed, failed = passed + len(oks), failed + len(run_errors)
    for more_passed, more_failed in (
            selftest.run(root, lambda tmp: check_all(tmp, herd, [])), test_pure.run()):
        passed, failed = passed + more_passed, failed + more_failed
    # The summary line scripts/test.sh adds up, as cargo's.
    print(f"test result: {'ok' if not failed else 'FAILED'}. {passed} passed; {failed} failed "
          "(check-deploy)")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

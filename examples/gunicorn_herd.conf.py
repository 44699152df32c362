"""gunicorn under herd: a gunicorn config file (docs/interop.md, "gunicorn under herd").

    herd run -w 4 -b http=:8000,nonblocking --ready notify -- \\
        gunicorn -c examples/gunicorn_herd.conf.py app:app

Each herd worker is one gunicorn arbiter with one sync worker; herd scales, upgrades and
recycles them. What this file changes:

- `READY=1` comes from gunicorn's worker, right before its accept loop (`post_worker_init`),
  not from the arbiter, which says it in `Arbiter.start` before it has forked its worker: herd
  then counts a gunicorn ready once it accepts, starts `--min-ready` from there, and keeps the
  worker's own set-up inside the `--starting-nice` warm-up. The arbiter's `READY=1` is
  suppressed by taking `NOTIFY_SOCKET` out of its environment (`on_starting`); the worker
  inherits the address. Only under herd (`HERD_WORKER` is set): elsewhere, as under systemd's
  `Type=notify`, which takes `READY=1` from the main process only, gunicorn says it itself.
- `preload_app`: the arbiter imports the app before it forks, so the worker forks ready-made.
- `workers = 1`: herd runs the processes that serve; gunicorn restarting its own worker would
  hide it from herd.
- `backlog`: gunicorn calls `listen()` again on herd's socket; keep the accept queue herd set
  (`net.core.somaxconn`, herd's default) instead of gunicorn's 2048.

Settings given on the command line win over this file.
"""
import os
import socket

workers = 1
preload_app = True


def _somaxconn():
    try:
        with open("/proc/sys/net/core/somaxconn") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 2048


backlog = _somaxconn()

# herd's notify socket, taken from the arbiter's environment; the worker inherits it by fork.
_notify_socket = None


def on_starting(server):
    """In the arbiter, before `Arbiter.start` says READY=1: it says nothing without the variable.
    Under herd only: systemd (default `NotifyAccess=main`) would ignore the worker's READY=1."""
    global _notify_socket
    if "HERD_WORKER" in os.environ:
        _notify_socket = os.environ.pop("NOTIFY_SOCKET", None)


def post_worker_init(worker):
    """In the worker, once the app is loaded and right before it accepts: READY=1 to herd."""
    if not _notify_socket:
        return
    address = "\0" + _notify_socket[1:] if _notify_socket.startswith("@") else _notify_socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(address)
            s.sendall(b"READY=1")
    except OSError as e:
        worker.log.warning("READY=1 to %s failed: %s", _notify_socket, e)

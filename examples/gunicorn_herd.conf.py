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
  inherits the address.
- `preload_app`: the arbiter imports the app before it forks, so the worker forks ready-made.
- `workers = 1`: herd runs the processes that serve; gunicorn restarting its own worker would
  hide it from herd.
- `backlog`: gunicorn calls `listen()` again on herd's socket; keep the accept queue herd set
  (`net.core.somaxconn`, herd's default) instead of gunicorn's 2048.
- A quick exit for the arbiter: once it has stopped its worker (`on_exit`), it runs the
  `atexit` functions, flushes logging and the standard streams, and ends with `os._exit` and
  gunicorn's exit status, skipping the interpreter's teardown, CPU taken from the serving
  workers in every upgrade. Not for the worker: one that exits that quickly as herd's stop
  signal reaches the whole process group can be reaped before the arbiter handles its own
  SIGTERM, and the arbiter then forks a new worker that misses the stop (it waits out
  `--graceful-timeout`).

Settings given on the command line win over this file.
"""
import atexit
import logging
import os
import socket
import sys

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
    """In the arbiter, before `Arbiter.start` says READY=1: it says nothing without the variable."""
    global _notify_socket
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


def _exit_now(status):
    """What the interpreter's exit does that can be seen (`atexit` functions, logging's
    handlers, the standard streams), then the exit itself without the teardown of every module
    and object."""
    try:
        atexit._run_exitfuncs()
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(status)


def _status(code):
    """The exit status `sys.exit(code)` gives, or None for a code that is not a number."""
    if code is None:
        return 0
    return code & 0xFF if isinstance(code, int) else None


def on_exit(server):
    """In the arbiter, last thing before `sys.exit(exit_status)` in `Arbiter.halt`: exits at
    once with that status (read from the caller; anywhere else, gunicorn exits as usual)."""
    caller = sys._getframe(1) if hasattr(sys, "_getframe") else None
    if caller is not None and caller.f_code.co_name == "halt":
        status = _status(caller.f_locals.get("exit_status"))
        if status is not None:
            _exit_now(status)

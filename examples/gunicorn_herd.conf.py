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
- A worker and an arbiter that stop cleanly (exit status 0) end without the interpreter's
  teardown (`worker_exit`, `on_exit`): freeing every object only takes CPU, tens of
  milliseconds of it, from the workers still serving while herd replaces this one. The app's
  `atexit` functions run and its open files are flushed first; other finalizers do not
  (`__del__`, a `NamedTemporaryFile` left undeleted): close such things in an `atexit` function.
- A stop never starts a worker (`when_ready`): herd's stop signal reaches the arbiter's whole
  process group, and a worker that exits before the arbiter's main loop reads its own stop
  would otherwise be replaced first (gunicorn reaps and refills in the same loop turn).

Settings given on the command line win over this file.
"""
import atexit
import gc
import io
import os
import signal
import socket
import sys
import threading

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


def when_ready(server):
    """In the arbiter, once its signal handlers are set: a stop signal (TERM, INT, QUIT) also
    sets its worker count to 0 at once. gunicorn queues a stop for its main loop, whose turn
    first reaps a worker that exited and starts another; under herd the worker gets the same
    signal and, ending at once, is often gone before the arbiter reads its own. Only a stop that
    is queued: gunicorn drops a signal while five wait, and the arbiter would then run on with
    no worker."""
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        queue = signal.getsignal(signum)
        if not callable(queue):
            continue

        def stop(sig, frame, queue=queue):
            waiting = len(server.SIG_QUEUE)
            queue(sig, frame)
            if len(server.SIG_QUEUE) > waiting:
                server.num_workers = 0

        signal.signal(signum, stop)


def _exit_now():
    """Ends the process without the interpreter's teardown, once what an exit owes the app is
    done: its `atexit` functions (logging's flush among them) and its open files flushed; with
    status 0, or 120 as Python's exit gives when its output cannot be flushed. Returns, for the
    usual exit, while another thread runs: Python would wait for it."""
    if threading.active_count() > 1:
        return
    # A second stop (gunicorn's worker takes INT and QUIT as "exit now") must not cut them
    # short. A handler that does nothing, not SIG_IGN, which a program they start would inherit.
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(signum, lambda signum, frame: None)
    atexit._run_exitfuncs()
    os._exit(_flush_open_files())


def _flush_open_files():
    """Flushes every file object still open, text ones before the binary ones under them, as the
    interpreter's teardown does when it frees them: what the app wrote to a file it keeps open
    is not lost. Finding them takes a look at every object the process holds: about 2 ms in the
    peer benchmark's gunicorn, half a second with five million objects (about what the teardown
    would have taken then). Returns the status Python's own exit gives: 120 if sys.stdout or
    sys.stderr could not be flushed, else 0."""
    status = 0
    for name in ("stdout", "stderr"):  # first, as Python's exit does: its status says if they failed
        f = getattr(sys, name, None)
        try:
            if f is not None and not f.closed:
                f.flush()
        except Exception as e:
            status = 120
            if name == "stdout":
                why = f"Exception ignored while flushing sys.stdout: {e!r}\n"
                try:
                    os.write(2, why.encode())
                except OSError:  # stderr fails too: the status still says so
                    pass
    kinds = (io.TextIOWrapper, io.BufferedWriter, io.BufferedRandom)
    files = [o for o in gc.get_objects() if isinstance(o, kinds)]
    files.sort(key=lambda f: not isinstance(f, io.TextIOWrapper))
    for f in files:
        try:
            if not f.closed:
                f.flush()
        except Exception:  # a closed, broken or detached file loses nothing more by exiting
            pass
    return status


def worker_exit(server, worker):
    """In the worker, as it exits (gunicorn calls this while its SystemExit is on its way; the
    arbiter also calls it when it reaps a worker): a clean exit ends here, without the
    interpreter's teardown; any other keeps its status."""
    stopping = sys.exc_info()[1]
    if os.getpid() == worker.pid and isinstance(stopping, SystemExit) and stopping.code in (0, None):
        _exit_now()


def on_exit(server):
    """In the arbiter, as it ends: after a stop signal (TERM, INT, QUIT: gunicorn's `halt` is
    then handling its StopIteration), with status 0 and without the interpreter's teardown;
    after an error (`HaltServer`), gunicorn exits with its own status."""
    if isinstance(sys.exc_info()[1], (StopIteration, KeyboardInterrupt)):
        _exit_now()

"""herd_gunicorn: run one gunicorn worker as one herd worker, without gunicorn's arbiter.

    herd run -w 4 -b http=:8000,nonblocking --ready notify -- \\
        python3 herd_gunicorn.py [GUNICORN OPTIONS] APP_MODULE

Takes gunicorn's own command line and configuration (`-c FILE`, `GUNICORN_CMD_ARGS`, its
settings and server hooks) and, under herd, runs its worker class (`--worker-class`; the sync
worker is tested) in this very process on herd's sockets: herd is the arbiter (it starts,
restarts, scales, upgrades and recycles the workers), so there is no gunicorn arbiter per herd
worker, half the processes and no second start-up. Outside herd (no HERD_WORKER, or no
LISTEN_FDS for this process: under systemd's socket activation too) it runs `gunicorn` as
usual, so the same command works everywhere.

Under herd:
- `READY=1` goes to herd right before the worker accepts (after `post_worker_init`).
- `--workers` is herd's `-w` and `--bind` herd's `-b`: gunicorn's are ignored (said once);
  the worker serves herd's sockets with the accept queue herd set (no second `listen()`).
  `--daemon` and `--pid` are ignored too; `--check-config` and `--print-config` do what they
  do in gunicorn, and exit.
- Server hooks, in one process: `on_starting`, `when_ready`, `pre_fork` and `post_fork` before
  the worker starts (so at each start of a worker, not once per pool), `post_worker_init`,
  then `worker_exit`, `child_exit` and `on_exit` as it ends. `worker_abort` does not run (herd's
  watchdog kills with SIGKILL), nor `on_reload`, `pre_exec` or `nworkers_changed`.
- The arbiter's other jobs are herd's. gunicorn's `--timeout` (kill a worker silent that long,
  stuck in a request) is herd's `--watchdog`: the worker's heartbeat says `WATCHDOG=1` to herd
  (the sync worker beats at least every third of it while idle; gthread and gevent about once
  a second, so give those a `--watchdog` of 3s or more). `--max-requests` (and its jitter) asks
  herd to recycle the worker (`HERD_RECYCLE=1`): its successor starts first, and it serves on
  until herd stops it. `--reload` does the same when a file changes.
- A clean stop (herd's SIGTERM: the worker finishes its requests) ends without the
  interpreter's teardown when no other thread runs (the sync worker): the app's `atexit`
  functions run and its open files are flushed, other finalizers do not (`__del__`), so that a
  stopping worker costs the ones still serving no CPU. Give herd a `--grace` above gunicorn's
  `--graceful-timeout` (30s by default, as herd's).
- Exit status: 0 after a stop; 1 after a crash; 2 if herd's sockets are another process's (a
  wrapper that did not `exec` it); 3 if the worker failed to boot; 4 if the app did not load.

Python 3.8+, gunicorn 20+, Linux and other Unixes. One file: copy it next to your app, or
put it on PYTHONPATH and run `python3 -m herd_gunicorn`.
"""
import atexit
import gc
import io
import os
import signal
import socket
import sys
import threading
import time
import traceback


def under_herd():
    """True when herd passed this very process its sockets (LISTEN_PID is ours)."""
    if "HERD_WORKER" not in os.environ:
        return False
    try:
        ours = int(os.environ.get("LISTEN_PID", "")) == os.getpid()
        return ours and int(os.environ.get("LISTEN_FDS", "0")) > 0
    except ValueError:
        return False


def send(state):
    """Sends `state` to herd's notify socket; says why on stderr if it cannot."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    address = "\0" + path[1:] if path.startswith("@") else path
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(address)
            s.sendall(state)
    except OSError as e:
        sys.stderr.write("herd_gunicorn.py: %s to %s failed: %s\n" % (state.decode(), path, e))


def flush_open_files():
    """Flushes every file object still open, text ones before the binary ones under them, as the
    interpreter's teardown would. Returns Python's exit status: 120 if sys.stdout or sys.stderr
    could not be flushed, else 0."""
    status = 0
    for name in ("stdout", "stderr"):
        f = getattr(sys, name, None)
        try:
            if f is not None and not f.closed:
                f.flush()
        except Exception as e:
            status = 120
            if name == "stdout":
                try:
                    os.write(2, ("Exception ignored while flushing sys.stdout: %r\n" % e).encode())
                except OSError:
                    pass
    kinds = (io.TextIOWrapper, io.BufferedWriter, io.BufferedRandom)
    files = [o for o in gc.get_objects() if isinstance(o, kinds)]
    files.sort(key=lambda f: not isinstance(f, io.TextIOWrapper))
    for f in files:
        try:
            if not f.closed:
                f.flush()
        except Exception:
            pass
    return status


def exit_now():
    """Ends a clean stop without the interpreter's teardown, once the app's atexit functions
    have run and its files are flushed; returns (for the usual exit) while another thread
    that is not a daemon runs: Python would wait for it."""
    others = (t for t in threading.enumerate() if t is not threading.main_thread())
    if any(t.is_alive() and not t.daemon for t in others):
        return
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(signum, lambda signum, frame: None)
    atexit._run_exitfuncs()
    os._exit(flush_open_files())


def herd_listeners(sock, cfg, log, count):
    """gunicorn's listeners on herd's sockets (fds 3...), keeping the accept queue herd set:
    gunicorn calls `listen()` again on a socket it is given, with its own `--backlog`."""
    socket.socket.listen = lambda self, backlog=None: None
    try:
        return sock.create_sockets(cfg, log, range(3, 3 + count))
    finally:
        del socket.socket.listen


def watchdog_seconds():
    """herd's `--watchdog`, from WATCHDOG_USEC (for this process, if WATCHDOG_PID says), or None."""
    try:
        usec = int(os.environ.get("WATCHDOG_USEC", ""))
        pid = int(os.environ.get("WATCHDOG_PID", os.getpid()))
    except ValueError:
        return None
    return usec / 1e6 if usec > 0 and pid == os.getpid() else None


def beats(worker, every):
    """gunicorn's heartbeat, `Worker.notify` (called between requests and at least every
    `timeout` seconds while idle), also tells herd what gunicorn's arbiter would act on:
    - with `every` (a tenth of herd's `--watchdog`, at most 0.5s), `WATCHDOG=1` at most once
      per `every` seconds: a worker stuck in one request longer than `--watchdog` is killed
      and replaced by herd, as gunicorn's arbiter does after its `--timeout`;
    - with `--max-requests`, `HERD_RECYCLE=1` once it has served that many (plus its jitter):
      herd starts its successor and stops it once that one is available, where the worker
      would exit and leave its slot empty (and herd count its exits as a crash loop)."""
    beat = worker.notify
    last = [float("-inf")]
    limit = worker.max_requests
    worker.max_requests = sys.maxsize  # gunicorn's own count would end the worker
    asked = [limit >= sys.maxsize]  # no --max-requests: nothing to ask

    def notify():
        beat()
        if every is not None:
            now = time.monotonic()
            if now - last[0] >= every:
                last[0] = now
                send(b"WATCHDOG=1")
        if not asked[0] and worker.nr >= limit:
            asked[0] = True
            worker.log.info("Served %d requests (--max-requests): asking herd for a successor",
                            worker.nr)
            send(b"HERD_RECYCLE=1")

    worker.notify = notify


def app_load_failed(app, error):
    """Says on stderr why the app did not load (a traceback unless the app's module itself is
    missing) and exits with gunicorn's status for it, 4."""
    uri = getattr(app, "app_uri", None) or "?"
    missing = isinstance(error, ModuleNotFoundError) and error.name == uri.split(":")[0]
    if not missing and not type(error).__name__ == "AppImportError":
        traceback.print_exc()
    say("the app %s did not load: %s" % (uri, one_line(error)))
    sys.exit(4)


def one_line(error):
    return " ".join(str(error).split()) or type(error).__name__


def serve():
    """Runs gunicorn's worker class in this process on herd's sockets."""
    from gunicorn import sock, systemd
    from gunicorn.app.wsgiapp import WSGIApplication
    from gunicorn.arbiter import Arbiter

    app = WSGIApplication("%(prog)s [OPTIONS] [APP_MODULE]", prog="herd_gunicorn.py")
    cfg = app.cfg
    as_gunicorn_runs(app)
    preload = cfg.preload_app
    cfg.set("preload_app", False)
    arbiter = Arbiter(app)  # gunicorn's logging and settings; the app is loaded below
    cfg.set("preload_app", preload)
    if preload:
        load_app(app)
    arbiter.pid = os.getpid()
    arbiter.LISTENERS = herd_listeners(sock, cfg, arbiter.log, systemd.listen_fds())
    cfg.on_starting(arbiter)
    cfg.when_ready(arbiter)
    watchdog = watchdog_seconds()
    timeout = min(arbiter.timeout / 2.0, watchdog / 3.0) if watchdog else arbiter.timeout / 2.0
    worker = arbiter.worker_class(1, os.getppid(), arbiter.LISTENERS, app, timeout, cfg,
                                  arbiter.log)
    sync = ("sync", "gunicorn.workers.sync.SyncWorker")
    if watchdog and watchdog < 3 and cfg.worker_class_str not in sync:
        say("--watchdog %gs: the %s worker beats about once a second; give it 3s or more"
            % (watchdog, cfg.worker_class_str))
    beats(worker, min(watchdog / 10.0, 0.5) if watchdog else None)
    cfg.pre_fork(arbiter, worker)
    worker.pid = os.getpid()
    cfg.post_fork(arbiter, worker)
    run_worker(arbiter, worker)


def say(text):
    sys.stderr.write("herd_gunicorn.py: %s\n" % text)


def as_gunicorn_runs(app):
    """What gunicorn's `Application.run` does before its arbiter starts, under herd: the
    config checks (which exit), `--spew`, `--pythonpath`; `--workers`, `--daemon` and `--pid`
    are herd's business and said to be ignored."""
    cfg = app.cfg
    if cfg.print_config or cfg.check_config:
        app.run()  # gunicorn's own: prints or loads, and exits
    bind = cfg.settings["bind"]
    if bind.value != bind.default:
        say("--bind ignored: the worker serves herd's sockets (herd run -b)")
    if cfg.workers != 1:
        say("--workers %d ignored: each herd worker is one gunicorn worker; set herd run's -w"
            % cfg.workers)
        cfg.set("workers", 1)
    for name, flag in (("daemon", "--daemon"), ("pidfile", "--pid")):
        if getattr(cfg, name):
            say("%s ignored: herd runs and tracks this process itself" % flag)
            cfg.set(name, False if name == "daemon" else None)
    if cfg.spew:
        from gunicorn import debug

        debug.spew()
    for path in (cfg.pythonpath or "").split(","):
        path = os.path.abspath(path) if path else None
        if path and path not in sys.path:
            sys.path.insert(0, path)


def load_app(app):
    """Loads the app (`app.wsgi()`), or ends the worker with status 4 saying why."""
    try:
        return app.wsgi()
    except Exception as e:
        app_load_failed(app, e)


def run_worker(arbiter, worker):
    """The worker's life as gunicorn's arbiter would give it after its fork, with `READY=1`
    once it is about to accept; a clean end skips the interpreter's teardown."""
    cfg = worker.cfg
    user_hook = cfg.settings["post_worker_init"].get()
    reload = cfg.reload
    cfg.set("reload", False)  # gunicorn's reloader would end the worker: herd replaces it

    def ready(worker):
        user_hook(worker)
        if reload:
            recycle_on_change(cfg)
        send(b"READY=1")

    cfg.settings["post_worker_init"].set(ready)
    worker.load_wsgi = lambda: setattr(worker, "wsgi", load_app(worker.app))
    clean = False
    try:
        worker.init_process()
        clean = True
    except SystemExit as e:
        clean = e.code in (0, None)
        raise
    except Exception:
        arbiter.log.exception("Exception in worker process")
        sys.exit(3 if not worker.booted else 1)
    finally:
        try:
            worker.tmp.close()
            cfg.worker_exit(arbiter, worker)
            cfg.child_exit(arbiter, worker)
            cfg.on_exit(arbiter)
        except Exception as e:
            arbiter.log.warning("Exception while the worker exits: %r", e)
        if clean:
            exit_now()


def recycle_on_change(cfg):
    """`--reload`: gunicorn's reloader, watching the app's files, asks herd for a successor
    (`HERD_RECYCLE=1`, once) when one changes; the successor loads the changed code."""
    from gunicorn.reloader import reloader_engines

    asked = []

    def changed(fname):
        if not asked:
            asked.append(fname)
            say("%s changed: asking herd for a successor" % fname)
            send(b"HERD_RECYCLE=1")

    engine = reloader_engines[cfg.reload_engine]
    engine(extra_files=cfg.reload_extra_files, callback=changed).start()


def main():
    if under_herd():
        try:
            serve()
        except Exception as e:  # a hook, the worker class, the settings: not the app's import
            traceback.print_exc()
            say("the worker could not boot: %s" % one_line(e))
            sys.exit(3)
    elif "HERD_WORKER" in os.environ:
        sys.stderr.write("herd_gunicorn.py: herd's sockets are for pid %s (LISTEN_PID), not this "
                         "process (%d): start it with exec from a wrapper script\n"
                         % (os.environ.get("LISTEN_PID", "none"), os.getpid()))
        sys.exit(2)
    else:
        from gunicorn.app.wsgiapp import run

        run(prog="herd_gunicorn.py")


if __name__ == "__main__":
    main()

"""herd_fork: run a Python program as herd's fork server (herd run --fork-server).

Usage:
    python3 herd_fork.py [--preload MODULE]... -m MODULE [ARGS...]
    python3 herd_fork.py [--preload MODULE]... SCRIPT [ARGS...]

Without HERD_FORK_SERVER in the environment this runs MODULE or SCRIPT as
`python3 -m MODULE ARGS` or `python3 SCRIPT ARGS` would (sys.argv, sys.path[0]),
so the same command works with and without --fork-server, and under systemd.

Under `herd run --fork-server` it is the generation's fork server: it imports
each --preload module (and, for -m, MODULE's package), says READY=1, then forks
one worker per herd request.  Each worker gets its own stdio, listening sockets
(fds 3...), environment (LISTEN_PID included) and command line from the
request, and runs the program from the top, without the interpreter start and
the preloaded imports (and a SCRIPT compiled once, by the fork server).  Run
from a wrapper script (`exec python3 herd_fork.py app.py "$@"`), its workers
get what the wrapper gave it: its arguments (those passed through last with the
worker's number) and the variables it set.

For gunicorn (gunicorn.glogging is imported at its start; preloading myapp too
spares each worker the app's imports):

    herd run --fork-server ... -- python3 herd_fork.py \\
        --preload gunicorn.app.wsgiapp --preload gunicorn.glogging \\
        --preload myapp -m gunicorn myapp:app

Keep preloading to imports: a preloaded module must start no thread (the fork
server refuses to fork with more than one) and keep no file or socket open
(each worker closes every fd but its own).  Workers share the fork server's
interpreter settings read at start (hash seed, PYTHON* variables).

Protocol: herd's docs (fork server protocol, version 1).  Linux only, Python
3.8+, standard library only: copy this file next to your app.
"""

import fcntl
import gc
import os
import runpy
import signal
import socket
import sys
import time

# Imports a generation needs only now and then (re, traceback) are made where they are used:
# the fork server's own start is part of every upgrade, and a worker that needs one imports it
# itself (or its app preloads it).

VERSION = b"herd-fork 1"
PR_SET_PDEATHSIG = 1
MAX_REQUEST = 4 << 20  # bytes; herd's SEQPACKET messages are far smaller
MAX_FDS = 253  # SCM_MAX_FD
MSG_CMSG_CLOEXEC = getattr(socket, "MSG_CMSG_CLOEXEC", 0x40000000)

USAGE = (
    "usage: herd_fork.py [--preload MODULE]... -m MODULE [ARGS...]\n"
    "       herd_fork.py [--preload MODULE]... SCRIPT [ARGS...]"
)


class UsageError(Exception):
    pass


class Program:
    """What to run: a module (-m) or a script, its arguments, the preloads."""

    def __init__(self, preload, module, script, args):
        self.preload, self.module, self.script, self.args = preload, module, script, args
        self.compiled = None  # (path, source, code) of SCRIPT, compiled by the fork server


def script_source(prog):
    """SCRIPT's path as __file__ gives it and its bytes, when python3 would compile it as
    Python source (not a directory, a zip file or a .pyc); else None. Raises OSError."""
    if os.path.isdir(prog.script):
        return None
    with open(prog.script, "rb") as f:
        source = f.read()
    from importlib.util import MAGIC_NUMBER

    if source.startswith(b"PK\x03\x04") or source.startswith(MAGIC_NUMBER):
        return None
    # Python 3.9+ makes a script's __file__ absolute.
    return (os.path.abspath(prog.script) if sys.version_info >= (3, 9) else prog.script), source


def compile_script(prog):
    """SCRIPT compiled once for the generation (each worker would compile it again at its start),
    as (path, source, code); None for a module, a script python3 runs otherwise, one that is
    no regular file, or one that does not compile or warns as it compiles (each worker then
    reports it as python3 would)."""
    if prog.script is None:
        return None
    try:
        # A regular file only: a FIFO (a script piped in) would block the fork server before
        # READY=1, and what it read would be the workers' no more; a device may never end.
        if not os.path.isfile(prog.script):
            return None
        found = script_source(prog)
        if found is None:
            return None
        path, source = found
        import warnings

        with warnings.catch_warnings(record=True) as warned:
            warnings.simplefilter("always")
            code = compile(source, path, "exec", dont_inherit=True)
        if warned:  # SyntaxWarning, ...: each worker compiles it and warns, as python3 would
            return None
        return path, source, code
    except Exception:  # SyntaxError, ValueError (a null byte), OSError, ...
        return None


def parse(args):
    """Parses the launcher's arguments (argv[1:] of its command line)."""
    preload = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--preload" or arg.startswith("--preload="):
            if arg == "--preload":
                if i + 1 == len(args):
                    raise UsageError("--preload needs a MODULE")
                i += 1
                arg = args[i]
            else:
                arg = arg[len("--preload="):]
            if not arg:
                raise UsageError("--preload needs a MODULE")
            preload.append(arg)
        elif arg == "-m" or (arg.startswith("-m") and arg != "-"):
            module = args[i + 1] if arg == "-m" and i + 1 < len(args) else arg[2:]
            if not module:
                raise UsageError("-m needs a MODULE")
            rest = i + 2 if arg == "-m" else i + 1
            return Program(preload, module, None, list(args[rest:]))
        elif arg == "--":
            if i + 1 == len(args):
                raise UsageError("no SCRIPT after --")
            return Program(preload, None, args[i + 1], list(args[i + 2:]))
        elif arg.startswith("-") and arg != "-":
            raise UsageError("unknown option %r" % arg)
        else:
            return Program(preload, None, arg, list(args[i + 1:]))
        i += 1
    raise UsageError("no -m MODULE or SCRIPT")


def set_main_path(prog):
    """sys.path[0] as Python sets it: cwd for -m, the script's directory.

    It replaces the launcher's own directory, which Python put there."""
    if getattr(sys.flags, "safe_path", False):
        return  # -P / PYTHONSAFEPATH: Python prepends nothing, nor do we
    if prog.module is not None:
        path0 = os.getcwd()
    elif os.path.isdir(prog.script) or not os.path.isfile(prog.script):
        path0 = prog.script  # a directory or zip file with __main__.py
    else:
        path0 = os.path.dirname(os.path.realpath(prog.script))
    if sys.path:
        sys.path[0] = path0
    else:
        sys.path.append(path0)


def run(prog):
    """Runs the program in this process, at its top level, as python3 would."""
    import types

    main = types.ModuleType("__main__")  # a fresh __main__, as at Python's start
    main.__builtins__ = sys.modules["builtins"]
    sys.modules["__main__"] = main
    if prog.module is not None:
        sys.argv = ["-m"] + prog.args  # runpy sets argv[0] to the module's file
        if hasattr(runpy, "_run_module_as_main"):
            runpy._run_module_as_main(prog.module)  # what python3 -m calls
        else:
            runpy.run_module(prog.module, run_name="__main__", alter_sys=True)
        return
    sys.argv = [prog.script] + prog.args
    try:
        found = script_source(prog)
    except OSError as e:
        sys.stderr.write("%s: can't open file %r: %s\n" % (sys.executable, prog.script, e))
        sys.exit(2)
    if found is None:
        runpy.run_path(prog.script, run_name="__main__")  # a directory's __main__.py, a zip, a .pyc
        return
    from importlib.machinery import SourceFileLoader

    path, source = found
    main.__file__, main.__cached__ = path, None
    main.__loader__ = SourceFileLoader("__main__", path)
    # The fork server's compilation, if the file still holds what it compiled (read again, as
    # a worker started without --fork-server would).
    cached = prog.compiled
    code = cached[2] if cached and cached[:2] == (path, source) else None
    exec(code or compile(source, path, "exec", dont_inherit=True), main.__dict__)


def run_as_python(prog):
    """run(prog), ending as python3 ends on an uncaught exception: its traceback (through
    sys.excepthook) without herd_fork.py's own frames above the program's, and status 1."""
    try:
        run(prog)
    except Exception as e:
        ours = run.__code__.co_filename
        tb = e.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename == ours:
            tb = tb.tb_next
        sys.excepthook(type(e), e.with_traceback(tb), tb)
        sys.exit(1)


def main():
    try:
        prog = parse(sys.argv[1:])
    except UsageError as e:
        sys.stderr.write("herd_fork.py: %s\n%s\n" % (e, USAGE))
        sys.exit(2)
    fd = os.environ.get("HERD_FORK_SERVER")
    if fd is None:
        set_main_path(prog)
        return prog
    try:
        server = ForkServer(int(fd), prog)
    except (ValueError, OSError) as e:
        sys.stderr.write("herd_fork.py: HERD_FORK_SERVER=%s is not herd's socket (%s): run "
                         "this under herd run --fork-server, or unset it\n" % (fd, e))
        sys.exit(2)
    return server.serve()


class BadRequest(Exception):
    pass


def parse_request(data, nfds):
    """Returns (argv, env) of a request; both lists of bytes."""
    if not data.endswith(b"\0"):
        raise BadRequest("request is not NUL-terminated")
    fields = data[:-1].split(b"\0")
    if fields[0] != VERSION:
        raise BadRequest("unsupported version %r (this is %r)" % (fields[0], VERSION))
    pos = 1

    def take_list(what):
        nonlocal pos
        if pos >= len(fields) or not fields[pos].isdigit():
            raise BadRequest("bad or missing %s count" % what)
        n = int(fields[pos])
        if pos + 1 + n > len(fields):
            raise BadRequest("%s count %d exceeds the request" % (what, n))
        items = fields[pos + 1:pos + 1 + n]
        pos += 1 + n
        return items

    argv = take_list("argv")
    env = take_list("env")
    if pos != len(fields):
        raise BadRequest("%d extra fields after the environment" % (len(fields) - pos))
    if not argv:
        raise BadRequest("argv is empty, needs the command herd runs")
    listen_fds = 0
    for item in env:
        key, eq, value = item.partition(b"=")
        if not eq or not key:
            raise BadRequest("bad environment entry %r" % item[:64])
        if key == b"LISTEN_FDS":
            if not value.isdigit():
                raise BadRequest("bad LISTEN_FDS %r" % value[:64])
            listen_fds = int(value)
    if nfds != 3 + listen_fds:
        raise BadRequest("%d fds, expected 3 + LISTEN_FDS = %d" % (nfds, 3 + listen_fds))
    return argv, env


def close_all(fds):
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def same_but_worker(own, got, worker):
    """Whether argument `got` (a request's) is the fork server's `own` but for the worker's
    number: herd starts the fork server with slot 0's command, so where `own` has a 0 that
    {worker} put there, `got` has `worker` (its HERD_WORKER, or None if it has none); the
    rest ({generation}, {fd:NAME}, other numbers) is the same in both."""
    if own == got:
        return True
    if worker is None or worker == b"0" or b"0" not in own:
        return False
    import re

    return re.fullmatch(re.escape(own).replace(b"0", b"(?:0|" + worker + b")"), got) is not None


def passed_through(own, argv, worker):
    """The fork server's own arguments `own` with the worker's numbers, for a wrapper that
    runs the launcher with what it was given last (`exec python3 herd_fork.py app.py --mode
    prod "$@"`): the longest tail of `own` that is the request's `argv` (herd's command for
    the worker) but for the worker's number becomes the request's. A wrapper that passes
    nothing through keeps its own (no tail of theirs matches, or a match changes nothing)."""
    n = 0
    while n < min(len(own), len(argv) - 1) and same_but_worker(own[-1 - n], argv[-1 - n], worker):
        n += 1
    return own[:len(own) - n] + argv[len(argv) - n:]


def env_value(env, key):
    """The value of `key` in a request's environment (the first, as at Python's start)."""
    for item in env:
        name, _, value = item.partition(b"=")
        if name == key:
            return value
    return None


def herds_variable(key):
    """Whether herd sets variable `key` per worker or for all of them: HERD_*, LISTEN_*,
    NOTIFY_SOCKET and --compat's. A worker takes these from herd's request, never from the
    fork server's environment (which has no HERD_WORKER nor LISTEN_*)."""
    return (key.startswith((b"HERD_", b"LISTEN_", b"EINHORN_"))
            or key in (b"NOTIFY_SOCKET", b"SERVER_STARTER_PORT"))


# How a command runs the launcher as a module: `python3 -m herd_fork`, `python3 -mherd_fork`.
MODULE = b"herd_fork"
MODULE_JOINED = b"-m" + MODULE


class ForkServer:
    def __init__(self, fd, prog):
        self.prog = prog
        self.herd_pid = os.getppid()
        # How the launcher's own arguments are found in a request's argv.
        self.launcher = os.fsencode(sys.argv[0])
        self.own_args = [os.fsencode(a) for a in sys.argv[1:]]
        self.sigint = signal.signal(signal.SIGINT, signal.SIG_IGN)
        del os.environ["HERD_FORK_SERVER"]
        # fd is inherited without close-on-exec; the socket object makes it so.
        self.sock = socket.socket(fileno=fd)
        self.sock.set_inheritable(False)

    def serve(self):
        """Serves requests; returns a Program only in a worker, exits otherwise."""
        prog = self.prog
        set_main_path(prog)
        sys.argv = [prog.script or "-m"] + prog.args
        try:
            self.preload()
        except Exception:
            import traceback

            traceback.print_exc()
            sys.stderr.write("herd_fork.py: preloading failed; not ready\n")
            flush_stdio()
            os._exit(1)
        threads = count_threads()
        if threads > 1:
            sys.stderr.write("herd_fork.py: %d threads after preloading; a fork server "
                             "must have one (a preloaded module started a thread)\n" % threads)
            flush_stdio()
            os._exit(1)
        children = running_children()
        if children:
            sys.stderr.write("herd_fork.py: child processes %s still run after preloading; a "
                             "fork server must have none: herd could neither list nor stop "
                             "them (a preloaded module started one: start it in the workers, "
                             "or leave it out of --preload)\n"
                             % ", ".join(str(pid) for pid in children))
            flush_stdio()
            os._exit(1)
        # The environment as a wrapper that exec'd the launcher and the preloads left it, for
        # the workers: a worker started without --fork-server would have run them itself.
        self.own_env = [(k, v) for k, v in os.environb.items() if not herds_variable(k)]
        # What the preloads made stays out of the workers' garbage collections (Python 3.7+):
        # a collection writes to every object it looks at, and so copies each page of them
        # into every worker that runs one.
        gc.collect()
        self.compiled = compile_script(prog)
        if hasattr(gc, "freeze"):
            gc.freeze()
        notify(b"READY=1")
        while True:
            try:
                data, fds, why_not = self.receive()
            except OSError:
                data, fds, why_not = b"", [], None
            if not data and not fds and why_not is None:  # EOF or error: herd is done
                flush_stdio()
                os._exit(0)
            worker = self.handle(data, fds, why_not)
            if worker is not None:
                return worker

    def preload(self):
        import importlib
        import importlib.util

        for name in self.prog.preload:
            importlib.import_module(name)
        if self.prog.module is not None:
            # MODULE's package, not MODULE itself: it is run as __main__ in the worker.
            spec = importlib.util.find_spec(self.prog.module)  # imports its parents
            if spec is None:
                raise ImportError("No module named %r" % self.prog.module)
            if spec.submodule_search_locations is not None:
                importlib.import_module(self.prog.module)  # a package: -m runs its __main__
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        self.prctl = libc.prctl
        self.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
        self.prctl.restype = ctypes.c_int

    def receive(self):
        """Returns (data, fds, why not), data b"" and no fds at EOF."""
        data, anc, flags, _ = self.sock.recvmsg(
            MAX_REQUEST, socket.CMSG_SPACE(MAX_FDS * 4), MSG_CMSG_CLOEXEC)
        fds = []
        for level, kind, cdata in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                # An array of C ints (4 bytes on Linux), read without importing array.
                fds.extend(memoryview(cdata[:len(cdata) - len(cdata) % 4]).cast("i"))
        if flags & socket.MSG_TRUNC:
            return data, fds, "request longer than %d bytes" % MAX_REQUEST
        if flags & socket.MSG_CTRUNC:
            return data, fds, "more than %d fds" % MAX_FDS
        return data, fds, None

    def reply(self, msg):
        try:
            self.sock.send(msg)
        except OSError:
            flush_stdio()
            os._exit(0)  # herd is gone

    def handle(self, data, fds, why_not):
        """Answers a request; returns the worker's Program in the worker only."""
        try:
            if why_not is not None:
                raise BadRequest(why_not)
            argv, env = parse_request(data, len(fds))
            worker_prog = parse([os.fsdecode(a) for a in self.launcher_args(argv, env)])
            threads = count_threads()
            if threads > 1:
                raise BadRequest("fork server has %d threads, cannot fork" % threads)
        except (BadRequest, UsageError) as e:
            close_all(fds)
            self.reply(b"error " + one_line(str(e)))
            return None
        flush_stdio()  # or the worker would write what is buffered again
        try:
            r, w = os.pipe()
        except OSError as e:
            close_all(fds)
            self.reply(b"error pipe: " + one_line(str(e)))
            return None
        try:
            pid = os.fork()
        except OSError as e:
            close_all(fds + [r, w])
            self.reply(b"error fork: " + one_line(str(e)))
            return None
        if pid == 0:
            parent = self.intermediate(r, w)
            # Only the worker gets here.
            try:
                self.become_worker(parent, fds, argv, env, worker_prog)
                worker_prog.compiled = self.compiled
            except BaseException:
                import traceback

                traceback.print_exc()
                flush_stdio()
                os._exit(1)
            return worker_prog
        os.close(w)
        close_all(fds)
        msg = b""
        try:
            while True:
                chunk = os.read(r, 64)
                msg += chunk
                if not chunk or msg.endswith(b"\n"):
                    break
        finally:
            os.close(r)
        try:
            os.waitpid(pid, 0)  # once reaped, the worker is herd's child
        except ChildProcessError:
            pass  # SIGCHLD ignored (by a preloaded module): reaped already
        if msg.endswith(b"\n") and msg[:-1].isdigit():
            self.reply(b"pid " + msg[:-1])
        elif msg.startswith(b"error "):
            self.reply(one_line(msg.decode("utf-8", "replace")))
        else:
            self.reply(b"error the intermediate process died before forking the worker")
        return None

    def launcher_args(self, argv, env):
        """The launcher's arguments in a request's argv (herd's worker command): those after
        its own path, which interpreter options (python3 -X dev) or a wrapper (env python3)
        may precede, or after `-m herd_fork`. A command that names neither runs the launcher
        through a script of its own, which without --fork-server would run it with what it
        gave the fork server: the fork server's own arguments (`exec python3 herd_fork.py
        app.py`), with the script's own passed through last (`exec python3 herd_fork.py
        app.py --mode prod "$@"`) the worker's: those differ from the fork server's (slot
        0's) only where herd put the worker's number ({worker})."""
        if self.launcher in argv[1:]:
            return argv[argv.index(self.launcher, 1) + 1:]
        for i, arg in enumerate(argv[1:-1], 1):
            if arg == b"-m" and argv[i + 1] == MODULE:
                return argv[i + 2:]
        if MODULE_JOINED in argv[1:]:
            return argv[argv.index(MODULE_JOINED, 1) + 1:]
        worker = env_value(env, b"HERD_WORKER")
        if worker is not None and not worker.isdigit():
            worker = None
        return passed_through(self.own_args, argv, worker)

    def intermediate(self, r, w):
        """Forks the worker and reports its pid; returns (its pid) only in the worker."""
        try:
            os.close(r)
            me = os.getpid()
            pid = os.fork()
            if pid == 0:
                os.close(w)  # the fork server's read sees EOF if we die early
                return me
            try:
                os.setpgid(pid, pid)
            except OSError:
                pass  # the worker did it already, or died
            os.write(w, b"%d\n" % pid)
        except OSError as e:
            os.write(w, b"error fork: " + one_line(str(e)) + b"\n")
        except BaseException:
            pass
        os._exit(0)

    def become_worker(self, intermediate, fds, argv, env, prog):
        """Step 3 of the protocol, up to running the program."""
        os.setpgid(0, 0)
        # Until the intermediate has exited and herd, the subreaper, adopted us.
        deadline = time.monotonic() + 1
        while os.getppid() == intermediate and time.monotonic() < deadline:
            time.sleep(0.0005)
        self.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        parent = os.getppid()
        if parent != self.herd_pid:  # herd is gone, or never was the fork server's parent
            sys.stderr.write("herd_fork.py: worker %d: its parent is pid %d, not the fork "
                             "server's parent %d: herd died, or herd_fork.py is not herd's "
                             "command itself (a wrapper must exec it)\n"
                             % (os.getpid(), parent, self.herd_pid))
            flush_stdio()
            os._exit(1)
        # The request's fds to 0, 1, 2, 3...: first above them all, then in place.
        n = len(fds)
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, n) for fd in fds]
        for target, fd in enumerate(high):
            os.dup2(fd, target, inheritable=True)
        self.sock.detach()  # closed below; the object must not close it again
        keep = set(range(n))
        try:
            open_fds = [int(x) for x in os.listdir("/proc/self/fd")]
        except OSError:
            open_fds = range(n, os.sysconf("SC_OPEN_MAX"))
        close_all(fd for fd in open_fds if fd not in keep)
        # A preload's wakeup fd (an asyncio loop's) is closed: a signal must not write its
        # byte into whatever the program opens next at that number.
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGINT, self.sigint)
        os.environ.clear()
        for item in env:
            key, _, value = item.partition(b"=")
            if key not in os.environb:  # the first wins, as at Python's start
                os.environb[key] = value
        # herd gave the fork server the request's environment but for its own variables: one
        # the fork server has otherwise, or that the request lacks, its wrapper (or a preload)
        # set, as it would have for this worker without --fork-server.
        os.environb.update(self.own_env)
        os.environ["LISTEN_PID"] = str(os.getpid())
        set_main_path(prog)
        if hasattr(sys, "orig_argv"):
            sys.orig_argv = [os.fsdecode(a) for a in argv]
        # stdout is line-buffered on a terminal, as at Python's start.
        if sys.stdout is not None:
            try:
                sys.stdout.reconfigure(line_buffering=os.isatty(1))
            except (AttributeError, OSError, ValueError):
                pass


def running_children():
    """The pids of this process's children still running (those that exited are reaped
    first); none where Linux's /proc/PID/task/TID/children cannot be read."""
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        return []
    pids = []
    try:
        for tid in os.listdir("/proc/self/task"):
            with open("/proc/self/task/%s/children" % tid) as f:
                pids.extend(int(pid) for pid in f.read().split())
    except OSError:
        return []
    return sorted(pids)


def count_threads():
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        import threading

        return threading.active_count()


def one_line(text):
    return " ".join(text.split()).encode("utf-8", "replace")


def flush_stdio():
    for f in (sys.stdout, sys.stderr):
        try:
            if f is not None:
                f.flush()
        except (OSError, ValueError):
            pass


def notify(state):
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(state, path)


if __name__ == "__main__":
    run_as_python(main())

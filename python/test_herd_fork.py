"""Tests of herd_fork.py with real processes: the test process plays herd.

python3 -m unittest discover -s python -p 'test_*.py'
"""

import array
import ctypes
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest
import warnings

import herd_fork  # this directory is on sys.path: unittest discover -s python, or run as a script

LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "herd_fork.py")
TIMEOUT = 10  # seconds: the bound on every wait

# The program the workers run: reports itself on stdout as one JSON line, then
# serves one connection on fd 3 (if given), then exits with $EXIT_CODE.
PROBE = r"""
VERSION = 1
import time
cpu_at_start = time.process_time()  # since the fork: the launcher's setup
import atexit, json, os, signal, socket, sys

def is_open(fd):
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False

names = os.listdir("/proc/self/fd")  # its own directory fd is gone after
fds = sorted(fd for fd in map(int, names) if is_open(fd))
info = {
    "cpu_at_start": cpu_at_start,
    "name": __name__,
    "file": __file__,
    "pid": os.getpid(),
    "ppid": os.getppid(),
    "pgid": os.getpgid(0),
    "argv": sys.argv,
    "path0": sys.path[0],
    "env": dict(os.environ),
    "fds": fds,
    "stat": {fd: list(os.fstat(fd)[1:3]) for fd in fds},
    "inheritable": [os.get_inheritable(fd) for fd in fds],
    "sigint": signal.getsignal(signal.SIGINT) is signal.default_int_handler,
    "wakeup_fd": signal.set_wakeup_fd(-1),
    "frozen": __import__("gc").get_freeze_count() if hasattr(__import__("gc"), "get_freeze_count") else None,
    "version": VERSION,
    # With the compile_watch preload: what this process compiled (after the fork).
    "compiled_here": [f for pid, f in getattr(sys.modules.get("compile_watch"), "seen", ())
                      if pid == os.getpid()],
}
atexit.register(lambda: print("atexit", flush=True))
print(json.dumps(info), flush=True)
if os.environ.get("LISTEN_FDS", "0") != "0":
    s = socket.socket(fileno=3)
    conn, _ = s.accept()
    conn.sendall(b"hello from %d" % os.getpid())
    conn.close()
if os.environ.get("BLOCK"):
    signal.pause()  # until killed
if os.environ.get("RAISE"):
    raise RuntimeError("probe failed on purpose")
sys.exit(int(os.environ.get("EXIT_CODE", "0")))
"""

libc = ctypes.CDLL(None, use_errno=True)
PR_SET_CHILD_SUBREAPER = 36


def setUpModule():
    # As herd is: orphaned workers become this process's children.
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def wait_pid(pid, timeout=TIMEOUT):
    """waitpid with a deadline; returns the exit status (or -signal)."""
    deadline = time.monotonic() + timeout
    while True:
        got, status = os.waitpid(pid, os.WNOHANG)
        if got == pid:
            return os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") \
                else (os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status))
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError("pid %d did not exit within %ss" % (pid, timeout))
        time.sleep(0.002)


def read_line(fd, timeout=TIMEOUT):
    """Reads one line from fd (a pipe) within timeout."""
    data = b""
    deadline = time.monotonic() + timeout
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AssertionError("no line within %ss (got %r)" % (timeout, data))
        chunk = os.read(fd, 1)
        if not chunk:
            raise AssertionError("EOF before a line (got %r)" % data)
        data += chunk
    return data


def request(argv, env, version=b"herd-fork 1"):
    fields = [version, b"%d" % len(argv)] + list(argv) + [b"%d" % len(env)] + list(env)
    return b"".join(f + b"\0" for f in fields)


def default_signals():
    """In the child before exec: SIGINT and SIGQUIT at their defaults, as herd leaves them."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)

class Herd:
    """One fork server, started as herd would, and its end of the socket."""

    def __init__(self, test, args, env=None, cwd=None, head=None):
        self.test = test
        self.dir = test.dir
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.notify_path = os.path.join(self.dir, "notify-%d" % id(self))
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(self.notify_path)
        # herd gives the fork server its workers' variables (Worker's env) but for their own:
        # with LC_CTYPE set, Python does not coerce a C locale into it (which the workers,
        # as started anew, would also have set).
        self.base_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_CTYPE": "C.UTF-8",
                         "NOTIFY_SOCKET": self.notify_path, "HERD_GENERATION": "1"}
        self.base_env.update(env or {})
        fs_env = dict(self.base_env, HERD_FORK_SERVER=str(theirs.fileno()))
        self.argv = (head or [sys.executable, LAUNCHER]) + args
        # herd starts it with default signal dispositions; a test run in the background of a
        # shell script inherits SIGINT ignored, which Python would keep.
        self.proc = subprocess.Popen(self.argv, env=fs_env, cwd=cwd or self.dir,
                                     stdin=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     pass_fds=[theirs.fileno()], preexec_fn=default_signals)
        theirs.close()
        test.addCleanup(self.close)

    def close(self):
        self.sock.close()
        self.notify.close()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stderr.close()

    def wait_ready(self):
        self.notify.settimeout(TIMEOUT)
        self.test.assertEqual(self.notify.recv(4096), b"READY=1")

    def send(self, payload, fds):
        self.sock.sendmsg([payload], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                       array.array("i", fds))] if fds else [])

    def reply(self):
        self.sock.settimeout(TIMEOUT)
        return self.sock.recv(4096)

    def fd_count(self):
        return len(os.listdir("/proc/%d/fd" % self.proc.pid))


class Worker:
    """A worker's fds from the test's side: stdout pipe, listening socket."""

    def __init__(self, test, n, listen=True):
        self.stdout_r, self.stdout_w = os.pipe()
        self.stderr_r, self.stderr_w = os.pipe()
        self.stdin = os.open(os.devnull, os.O_RDONLY)
        self.listener = None
        fds = [self.stdin, self.stdout_w, self.stderr_w]
        if listen:
            self.listener = socket.socket()
            self.listener.bind(("127.0.0.1", 0))
            self.listener.listen(1)
            fds.append(self.listener.fileno())
        self.fds = fds
        self.env = [b"HERD_WORKER=%d" % n, b"HERD_GENERATION=1",
                    b"LISTEN_FDS=%d" % (len(fds) - 3), b"LISTEN_FDNAMES=http",
                    b"PATH=" + os.environ.get("PATH", "/bin").encode(), b"LC_CTYPE=C.UTF-8",
                    b"ODD=\xff\xfe not utf-8"]
        test.addCleanup(self.close)

    def close(self):
        for fd in (self.stdout_r, self.stdout_w, self.stderr_r, self.stderr_w, self.stdin):
            try:
                os.close(fd)
            except OSError:
                pass
        if self.listener:
            self.listener.close()

    def sent(self):
        """After the request: the test keeps only its reading end."""
        for fd in (self.stdout_w, self.stderr_w, self.stdin):
            os.close(fd)
        self.stdout_w = self.stderr_w = self.stdin = -1

    def stderr(self):
        """All the worker wrote to stderr (after it exited)."""
        chunks = []
        while select.select([self.stderr_r], [], [], TIMEOUT)[0]:
            chunk = os.read(self.stderr_r, 65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
        raise AssertionError("stderr still open after %ss" % TIMEOUT)


class ForkServerTest(unittest.TestCase):
    def setUp(self):
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.dir = tmp.name
        self.script = os.path.join(self.dir, "probe.py")
        with open(self.script, "w") as f:
            f.write(PROBE)

    def start(self, args=None, **kw):
        herd = Herd(self, args if args is not None else [self.script, "fixed"], **kw)
        herd.wait_ready()
        return herd

    def fork(self, herd, n, listen=True, extra_env=(), argv_tail=None, argv_head=None):
        worker = Worker(self, n, listen)
        worker.env += list(extra_env)
        tail = argv_tail if argv_tail is not None else [self.script, "fixed", "worker-%d" % n]
        head = argv_head or [sys.executable, LAUNCHER]
        argv = [os.fsencode(a) for a in head + tail]
        worker.argv = argv
        herd.send(request(argv, worker.env), worker.fds)
        reply = herd.reply()
        worker.sent()
        self.assertTrue(reply.startswith(b"pid "), reply)
        worker.pid = int(reply[4:])
        worker.info = json.loads(read_line(worker.stdout_r))
        return worker

    def finish(self, worker, expect_status=0):
        """Connects to the worker's socket, checks the greeting and its exit."""
        if worker.listener:
            with socket.create_connection(worker.listener.getsockname(), TIMEOUT) as c:
                c.settimeout(TIMEOUT)
                self.assertEqual(c.recv(100), b"hello from %d" % worker.pid)
        self.assertEqual(read_line(worker.stdout_r), b"atexit\n")
        self.assertEqual(wait_pid(worker.pid), expect_status)
        self.assertEqual(worker.stderr(), b"")

    def test_a_worker_is_herds_child_with_the_requests_fds_env_and_argv(self):
        herd = self.start()
        w = self.fork(herd, 1)
        info = w.info
        self.assertEqual(info["pid"], w.pid)
        self.assertEqual(info["ppid"], os.getpid())
        self.assertEqual(info["pgid"], w.pid)
        self.assertEqual(info["name"], "__main__")
        expected_env = {os.fsdecode(k): os.fsdecode(v) for k, _, v in
                        (e.partition(b"=") for e in w.env)}
        expected_env["LISTEN_PID"] = str(w.pid)
        self.assertEqual(info["env"], expected_env)
        self.assertEqual(info["fds"], [0, 1, 2, 3])
        self.assertEqual(info["inheritable"], [True] * 4)
        # stdout: the pipe's read end has the inode of its write end.
        stats = [os.stat(os.devnull), os.fstat(w.stdout_r), os.fstat(w.stderr_r),
                 os.fstat(w.listener.fileno())]
        for fd, st in enumerate(stats):
            self.assertEqual(info["stat"][str(fd)], [st.st_ino, st.st_dev], "fd %d" % fd)
        self.assertEqual(info["argv"], [self.script, "fixed", "worker-1"])
        self.assertEqual(info["path0"], self.dir)
        self.assertTrue(info["sigint"], "SIGINT is back to Python's handler")
        self.finish(w)

    def test_one_fork_server_forks_two_workers_with_their_exit_statuses(self):
        herd = self.start()
        w1 = self.fork(herd, 1)
        w2 = self.fork(herd, 2, extra_env=[b"EXIT_CODE=7"])
        self.assertNotEqual(w1.pid, w2.pid)
        self.assertEqual(w2.info["argv"][-1], "worker-2")
        self.finish(w2, expect_status=7)
        self.finish(w1)
        self.assertIsNone(herd.proc.poll())

    def test_a_worker_runs_a_module_with_m(self):
        herd = self.start(["--preload", "json", "-m", "probe", "x"])
        w = self.fork(herd, 1, argv_tail=["-m", "probe", "y"])
        self.assertEqual(w.info["argv"], [self.script, "y"])
        self.assertEqual(w.info["path0"], self.dir)  # the cwd
        self.assertEqual(w.info["file"], self.script)
        self.finish(w)

    def test_interpreter_options_and_m_before_the_launcher_are_skipped(self):
        # The launcher's arguments follow its path (python3 -W ignore herd_fork.py),
        # or are as many as its own from the end (python3 -m herd_fork).
        head = [sys.executable, "-W", "ignore", LAUNCHER]
        herd = self.start(head=head)
        w = self.fork(herd, 1, argv_head=head)
        self.assertEqual(w.info["argv"], [self.script, "fixed", "worker-1"])
        self.finish(w)
        head = [sys.executable, "-m", "herd_fork"]
        env = {"PYTHONPATH": os.path.dirname(LAUNCHER)}
        herd = self.start([self.script, "fixed"], env=env, head=head)
        w = self.fork(herd, 2, argv_head=head, argv_tail=[self.script, "worker-2"])
        self.assertEqual(w.info["argv"], [self.script, "worker-2"])
        self.finish(w)

    def test_a_wrapper_script_runs_what_the_fork_server_was_given(self):
        # herd's command is a script that execs `python3 herd_fork.py SCRIPT fixed`: its own
        # arguments are not the launcher's, with or without --fork-server.
        herd = self.start()
        for head, tail in ((["/srv/app/run.sh"], ["--config", "settings.py"]), (["/srv/run.sh"], [])):
            w = self.fork(herd, 1, argv_head=head, argv_tail=tail)
            self.assertEqual(w.info["argv"], [self.script, "fixed"])
            self.finish(w)
        # One that passes its own through (`exec python3 herd_fork.py "$@"`), with the worker's
        # number in them: each worker gets its own.
        herd = self.start([self.script, "worker-0"])
        w = self.fork(herd, 3, argv_head=["/srv/run.sh"], argv_tail=[self.script, "worker-3"])
        self.assertEqual(w.info["argv"], [self.script, "worker-3"])
        self.finish(w)

    def test_a_wrapper_with_arguments_of_its_own_passes_each_worker_its_numbers(self):
        # `exec python3 herd_fork.py SCRIPT --mode prod "$@"` run as `run.sh --port-offset
        # {worker}`: the fork server was given slot 0's; each worker gets its own.
        herd = self.start([self.script, "--mode", "prod", "--port-offset", "0"])
        for n in (3, 12):
            w = self.fork(herd, n, argv_head=["/srv/run.sh"], argv_tail=["--port-offset", str(n)])
            self.assertEqual(w.info["argv"], [self.script, "--mode", "prod", "--port-offset", str(n)])
            self.finish(w)

    def test_a_wrappers_variables_and_the_preloads_reach_the_workers_but_herds_are_the_requests(self):
        # A wrapper that exports variables before it execs the launcher: without --fork-server
        # each worker would run it and have them. So would a preload's (Django's wsgi.py
        # sets DJANGO_SETTINGS_MODULE as it is imported, which the worker then does not).
        # herd's own variables are the worker's, whatever the fork server has.
        # env(1) plays it (a shell would add its own, PWD): it changes the environment herd
        # gave the fork server, then execs the launcher.
        path = os.environ.get("PATH", "/usr/bin:/bin")
        wrapper = ["env", "DB_URL=postgres://db/app", "PATH=/opt/venv/bin:" + path,
                   "HERD_WORKER=99", "LISTEN_FDS=7", "LISTEN_FDNAMES=nope", "HERD_GENERATION=5"]
        with open(os.path.join(self.dir, "env_preload.py"), "w") as f:
            f.write("import os\nos.environ.setdefault('DJANGO_SETTINGS_MODULE', 'site.settings')\n")
        herd = self.start(["--preload", "env_preload", self.script, "fixed"],
                          head=wrapper + [sys.executable, LAUNCHER])
        for n in (1, 2):
            w = self.fork(herd, n, argv_head=["/srv/run.sh"], argv_tail=[])
            self.assertEqual(w.info["argv"], [self.script, "fixed"])
            expected_env = {os.fsdecode(k): os.fsdecode(v) for k, _, v in
                            (e.partition(b"=") for e in w.env)}
            expected_env.update(DB_URL="postgres://db/app", LISTEN_PID=str(w.pid),
                                PATH="/opt/venv/bin:" + expected_env["PATH"],
                                DJANGO_SETTINGS_MODULE="site.settings")
            # NOTIFY_SOCKET too is herd's: the request (this test's) has none.
            self.assertEqual(w.info["env"], expected_env)
            self.finish(w)

    def test_workers_start_at_once_after_the_reply(self):
        # A worker that missed its reparenting (its intermediate gone before it
        # looked) polled out the whole 1 s bound before running the program: ~35 ms
        # of its own CPU (3 ms otherwise). A slow start without that CPU is load.
        herd = self.start()
        for n in range(1, 11):
            t0 = time.monotonic()
            w = self.fork(herd, n, listen=False)
            wall, cpu = time.monotonic() - t0, w.info["cpu_at_start"]
            self.assertFalse(wall >= 0.9 and cpu >= 0.015,
                             "worker %d: %.3f s, %.1f ms CPU before the program" % (n, wall, cpu * 1e3))
            self.finish(w)

    def test_an_uncaught_exception_prints_a_traceback_and_exits_1(self):
        herd = self.start()
        w = self.fork(herd, 1, listen=False, extra_env=[b"RAISE=1"])
        self.assertEqual(read_line(w.stdout_r), b"atexit\n")
        self.assertEqual(wait_pid(w.pid), 1)
        err = w.stderr()
        # As python3 prints it: from the script's own frame, none of herd_fork.py's above it.
        first = b'Traceback (most recent call last):\n  File "%s"' % os.fsencode(self.script)
        self.assertTrue(err.startswith(first), err)
        self.assertNotIn(b"herd_fork.py", err)
        self.assertTrue(err.endswith(b"RuntimeError: probe failed on purpose\n"), err)
        # The fork server keeps serving.
        w2 = self.fork(herd, 2, listen=False)
        self.finish(w2)

    def test_bad_requests_get_an_error_and_their_fds_are_closed(self):
        herd = self.start()
        self.finish(self.fork(herd, 1))  # the fork server is in its request loop
        before = herd.fd_count()
        good_argv = [os.fsencode(sys.executable), os.fsencode(LAUNCHER), os.fsencode(self.script)]
        env = [b"LISTEN_FDS=0"]
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        self.addCleanup(os.close, w)
        bad = [
            (request(good_argv, env, version=b"herd-fork 2"), [r, w, w]),
            (b"herd-fork 1\x002\x00a\x00", [r, w, w]),
            (request(good_argv, env)[:-1], [r, w, w]),  # no final NUL
            (request(good_argv, env) + b"extra\0", [r, w, w]),
            (request(good_argv, env), [r, w]),  # 2 fds, not 3
            (request([], env), [r, w, w]),
            (request(good_argv, [b"LISTEN_FDS=1"]), [r, w, w]),
            (request(good_argv, [b"NOEQUALS"]), [r, w, w]),
            (request(good_argv[:2] + [b"--bogus"], env), [r, w, w]),
            (request(good_argv, env), []),
        ]
        for payload, fds in bad:
            herd.send(payload, fds)
            reply = herd.reply()
            self.assertTrue(reply.startswith(b"error "), (payload, reply))
            self.assertNotIn(b"\n", reply)
        self.assertEqual(herd.fd_count(), before, "the received fds are closed")
        self.finish(self.fork(herd, 2))

    def test_a_worker_whose_parent_is_not_the_fork_servers_says_so(self):
        # A shell that forks the fork server (not exec) is its parent, not herd.
        head = ["sh", "-c", '"$0" "$@"; exit', sys.executable, LAUNCHER]
        herd = self.start(head=head)
        worker = Worker(self, 1, listen=False)
        argv = [os.fsencode(a) for a in [sys.executable, LAUNCHER, self.script, "fixed"]]
        herd.send(request(argv, worker.env), worker.fds)
        reply = herd.reply()
        worker.sent()
        self.assertTrue(reply.startswith(b"pid "), reply)
        self.assertEqual(wait_pid(int(reply[4:])), 1)
        line = read_line(herd.proc.stderr.fileno())
        self.assertIn(b"herd_fork.py is not herd's command itself", line)

    def test_a_bad_herd_fork_server_is_one_line_and_status_2(self):
        for value in ("x", "99"):
            env = dict(os.environ, HERD_FORK_SERVER=value)
            p = subprocess.run([sys.executable, LAUNCHER, self.script], env=env,
                               stderr=subprocess.PIPE, timeout=TIMEOUT)
            self.assertEqual(p.returncode, 2, p.stderr)
            self.assertEqual(p.stderr.count(b"\n"), 1, p.stderr)
            self.assertIn(b"HERD_FORK_SERVER=%s is not herd's socket" % value.encode(), p.stderr)

    def test_a_preloads_signal_wakeup_fd_is_unset_in_the_worker(self):
        # As an asyncio loop made at import does: its fd is closed in the worker.
        with open(os.path.join(self.dir, "wakeup_preload.py"), "w") as f:
            f.write("import os, signal\nr, w = os.pipe()\nos.set_blocking(w, False)\n"
                    "signal.set_wakeup_fd(w)\n")
        herd = self.start(["--preload", "wakeup_preload", self.script, "fixed"])
        w = self.fork(herd, 1, listen=False)
        self.assertEqual(w.info["wakeup_fd"], -1)
        self.finish(w)

    def test_what_the_preloads_made_is_frozen_out_of_the_workers_collections(self):
        if not hasattr(__import__("gc"), "freeze"):
            self.skipTest("gc.freeze is Python 3.7's")
        with open(os.path.join(self.dir, "heavy_preload.py"), "w") as f:
            f.write("table = [{'n': i} for i in range(10000)]\n")
        herd = self.start(["--preload", "heavy_preload", self.script, "fixed"])
        w = self.fork(herd, 1, listen=False)
        self.assertGreater(w.info["frozen"], 10000)
        self.finish(w)

    def watch_compiles(self):
        """A preload that notes each compile() (the audit event) with the pid that made it."""
        with open(os.path.join(self.dir, "compile_watch.py"), "w") as f:
            f.write("import os, sys\nseen = []\n"
                    "sys.addaudithook(lambda e, a: e == 'compile' and seen.append((os.getpid(), a[1])))\n")
        return ["--preload", "compile_watch", self.script, "fixed"]

    def test_workers_run_the_script_the_fork_server_compiled(self):
        herd = self.start(self.watch_compiles())
        w = self.fork(herd, 1, listen=False)
        self.assertEqual(w.info["compiled_here"], [])
        self.assertEqual(w.info["version"], 1)
        self.assertEqual(w.info["file"], self.script)
        self.finish(w)

    def test_a_script_changed_after_the_fork_server_started_runs_as_changed(self):
        herd = self.start(self.watch_compiles())
        with open(self.script, "w") as f:
            f.write(PROBE.replace("VERSION = 1", "VERSION = 2"))
        w = self.fork(herd, 1, listen=False)
        self.assertEqual(w.info["version"], 2)
        self.assertEqual(w.info["compiled_here"], [self.script])
        self.finish(w)

    def test_a_script_that_does_not_compile_fails_in_its_worker_as_python_would(self):
        with open(self.script, "w") as f:
            f.write("def broken(:\n")
        herd = self.start()
        worker = Worker(self, 1, False)
        herd.send(request([os.fsencode(a) for a in [sys.executable, LAUNCHER, self.script, "fixed"]],
                          worker.env), worker.fds)
        reply = herd.reply()
        worker.sent()
        self.assertTrue(reply.startswith(b"pid "), reply)
        self.assertEqual(wait_pid(int(reply[4:])), 1)
        # As python3 prints it: where, then what; no traceback through herd_fork.py.
        err = worker.stderr()
        self.assertTrue(err.startswith(b'  File "%s", line 1\n' % os.fsencode(self.script)), err)
        self.assertTrue(err.endswith(b"SyntaxError: invalid syntax\n"), err)

    def test_each_worker_of_a_script_that_warns_as_it_compiles_warns(self):
        # The fork server compiled it once and warned once, in its own output; python3 warns at
        # each start.
        with open(self.script) as f:
            probe = f.read()
        with open(self.script, "w") as f:
            f.write('assert (1, "always true")\n' + probe)
        herd = self.start(self.watch_compiles())
        for n in (1, 2):
            w = self.fork(herd, n, listen=False)
            self.assertIn(self.script, w.info["compiled_here"])
            self.assertEqual(read_line(w.stdout_r), b"atexit\n")
            self.assertEqual(wait_pid(w.pid), 0)
            self.assertIn(b"SyntaxWarning: assertion is always true", w.stderr())

    def test_eof_ends_the_fork_server_with_status_0(self):
        herd = self.start()
        herd.sock.close()
        self.assertEqual(herd.proc.wait(TIMEOUT), 0)

    def test_a_failing_preload_exits_non_zero_before_ready(self):
        herd = Herd(self, ["--preload", "no_such_module_xyz", self.script])
        self.assertNotEqual(herd.proc.wait(TIMEOUT), 0)
        self.assertIn(b"ModuleNotFoundError", herd.proc.stderr.read())
        herd.notify.setblocking(False)
        with self.assertRaises(BlockingIOError):
            herd.notify.recv(4096)

    def test_a_preload_that_leaves_a_child_process_is_refused_before_ready(self):
        # Was: the child served on, unlisted, and outlived herd's stop (herd stops what a
        # worker leaves, not what its fork server does). One that exited is no child left.
        with open(os.path.join(self.dir, "spawner.py"), "w") as f:
            # The first child has exited (not reaped: WNOWAIT) before the preload ends.
            f.write("import os, time\n"
                    "done = os.fork()\n"
                    "if done == 0:\n    os._exit(0)\n"
                    "os.waitid(os.P_PID, done, os.WEXITED | os.WNOWAIT)\n"
                    "if os.fork() == 0:\n    time.sleep(60); os._exit(0)\n")
        herd = Herd(self, ["--preload", "spawner", self.script], env={"PYTHONPATH": self.dir})
        self.assertEqual(herd.proc.wait(TIMEOUT), 1)
        # What it said, not to the pipe's end: the child left holds it open.
        said = os.read(herd.proc.stderr.fileno(), 65536)
        found = re.match(rb"^herd_fork.py: child processes (\d+) still run after preloading", said)
        self.assertIsNotNone(found, said)
        left = int(found.group(1))
        os.kill(left, signal.SIGKILL)
        herd.notify.setblocking(False)
        with self.assertRaises(BlockingIOError):
            herd.notify.recv(4096)

    def test_the_fork_server_ignores_sigint_and_its_workers_do_not(self):
        herd = self.start()
        herd.proc.send_signal(signal.SIGINT)
        w = self.fork(herd, 1, listen=False)
        self.assertTrue(w.info["sigint"])
        self.finish(w)
        self.assertIsNone(herd.proc.poll())

    def test_without_herd_fork_server_it_runs_the_script_as_python_would(self):
        env = dict(os.environ, EXIT_CODE="5")
        env.pop("HERD_FORK_SERVER", None)
        for args in ([self.script, "a", "b"], ["-m", "probe", "a"]):
            outs = []
            for cmd in ([sys.executable] + args, [sys.executable, LAUNCHER] + args):
                p = subprocess.run(cmd, env=env, cwd=self.dir, stdout=subprocess.PIPE,
                                   timeout=TIMEOUT)
                self.assertEqual(p.returncode, 5, cmd)
                lines = p.stdout.splitlines()
                self.assertEqual(lines[1], b"atexit")
                info = json.loads(lines[0])
                outs.append({k: info[k] for k in ("name", "file", "argv", "path0", "sigint")})
            self.assertEqual(outs[0], outs[1], args)

    def test_a_worker_dies_with_herd(self):
        # A stand-in herd (a subreaper too) starts the fork server and asks for one
        # worker; once it is SIGKILLed, the worker, now the test's, is SIGKILLed.
        helper = os.path.join(self.dir, "fake_herd.py")
        with open(helper, "w") as f:
            f.write(textwrap.dedent("""
                import array, ctypes, os, socket, subprocess, sys
                ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)
                launcher, script, notify = sys.argv[1:]
                ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                n = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                n.bind(notify)
                env = dict(os.environ, NOTIFY_SOCKET=notify, HERD_FORK_SERVER=str(theirs.fileno()))
                fs = subprocess.Popen([sys.executable, launcher, script], env=env,
                                      pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
                n.settimeout(10)
                assert n.recv(100) == b"READY=1"
                argv = [sys.executable, launcher, script]
                req = [b"herd-fork 1", b"3"] + [os.fsencode(a) for a in argv] + [b"2", b"LISTEN_FDS=0", b"BLOCK=1"]
                r, w = os.pipe()
                null = os.open(os.devnull, os.O_RDONLY)
                ours.sendmsg([b"".join(x + b"\\0" for x in req)],
                              [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [null, w, 2]))])
                ours.settimeout(10)
                reply = ours.recv(100).decode()
                os.close(w)
                os.read(r, 1)  # its first output: it runs the program, PDEATHSIG is set
                print(fs.pid, reply, flush=True)
                sys.stdin.read()  # until killed
            """))
        p = subprocess.Popen([sys.executable, helper, LAUNCHER, self.script,
                              os.path.join(self.dir, "n")],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.addCleanup(p.stdin.close)
        self.addCleanup(p.stdout.close)
        fork_server, word, pid = read_line(p.stdout.fileno()).split()
        self.assertEqual(word, b"pid")
        p.kill()
        p.wait()
        # The worker waits in signal.pause(): only its SIGKILL ends it.
        self.assertEqual(wait_pid(int(pid)), -signal.SIGKILL)
        # The fork server, reparented to the test, sees EOF and exits.
        self.assertEqual(wait_pid(int(fork_server)), 0)


class PassedThroughTest(unittest.TestCase):
    """Which arguments a wrapper script's workers run (herd_fork.passed_through)."""

    def check(self, own, tail, worker, expected):
        own, expected = [a.encode() for a in own.split()], [a.encode() for a in expected.split()]
        argv = [b"/srv/run.sh"] + [a.encode() for a in tail.split()]
        worker = None if worker is None else str(worker).encode()
        self.assertEqual(herd_fork.passed_through(own, argv, worker), expected, (own, argv))

    def test_the_tail_passed_through_has_the_workers_numbers(self):
        self.check("app.py --mode prod --port-offset 0", "--port-offset 3", 3,
                   "app.py --mode prod --port-offset 3")
        self.check("app.py worker-0", "app.py worker-12", 12, "app.py worker-12")
        self.check("app.py worker-0", "--config x.py app.py worker-2", 2, "app.py worker-2")
        self.check("app.py --port 8000", "--port 8003", 3, "app.py --port 8003")
        self.check("app.py --log /var/app-0-1.log", "--log /var/app-10-1.log", 10,
                   "app.py --log /var/app-10-1.log")
        self.check("app.py --threads 4 --port-offset 0", "--port-offset 2", 2,
                   "app.py --threads 4 --port-offset 2")
        self.check("app.py worker-0", "app.py worker-0", 0, "app.py worker-0")

    def test_numbers_that_are_not_the_workers_are_the_fork_servers(self):
        # A wrapper that passes nothing through keeps its own numbers, whatever herd's are.
        self.check("app.py --threads 4", "7", 7, "app.py --threads 4")
        self.check("app.py --port 9000", "--port 8003", 3, "app.py --port 9000")
        self.check("app.py --port 8000", "--port 8003", 4, "app.py --port 8000")
        self.check("app.py a0", "b3", 3, "app.py a0")
        # Without HERD_WORKER the worker's number is not known.
        self.check("app.py worker-0", "app.py worker-3", None, "app.py worker-0")

    def test_no_tail_in_common_runs_the_fork_servers_arguments(self):
        self.check("app.py fixed", "--config settings.py", 1, "app.py fixed")
        self.check("app.py fixed", "", 1, "app.py fixed")
        self.check("", "--port-offset 1", 1, "")
        # herd's program (the wrapper's path) is never an argument passed through.
        self.check("run-0.sh", "", 1, "run-0.sh")


class CompileScriptTest(unittest.TestCase):
    """What the fork server compiles once for its workers (herd_fork.compile_script)."""

    def test_a_script_that_is_no_regular_file_is_left_to_the_workers(self):
        # A FIFO: the fork server blocked in open() before READY=1 (herd waited --ready-timeout
        # for it), where the workers, as python3's, read it themselves.
        with tempfile.TemporaryDirectory() as d:
            fifo = os.path.join(d, "app.py")
            os.mkfifo(fifo)
            class Blocked(BaseException):  # not caught by compile_script's `except Exception`
                pass

            def blocked(*_):
                raise Blocked()

            old = signal.signal(signal.SIGALRM, blocked)
            signal.alarm(2)
            try:
                self.assertIsNone(herd_fork.compile_script(herd_fork.Program([], None, fifo, [])))
                self.assertIsNone(herd_fork.compile_script(herd_fork.Program([], None, d, [])))
            except Blocked:
                self.fail("compile_script blocked on a FIFO")
            finally:
                signal.alarm(0)
                signal.signal(signal.SIGALRM, old)
            script = os.path.join(d, "real.py")
            with open(script, "w") as f:
                f.write("x = 1\n")
            path, source, _ = herd_fork.compile_script(herd_fork.Program([], None, script, []))
            self.assertEqual((path, source), (script, b"x = 1\n"))

    def test_a_script_that_warns_as_it_compiles_is_left_to_the_workers(self):
        with tempfile.TemporaryDirectory() as d:
            script = os.path.join(d, "app.py")
            with open(script, "w") as f:
                f.write('assert (1, "always true")\n')
            with warnings.catch_warnings(record=True) as warned:
                warnings.simplefilter("always")
                self.assertIsNone(herd_fork.compile_script(herd_fork.Program([], None, script, [])))
            self.assertEqual(warned, [], "the fork server warns nothing itself")


if __name__ == "__main__":
    unittest.main()

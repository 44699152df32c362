"""The systems of the peer benchmark, each with 4 workers on a loopback port: start, reload
(returns once the reload is over: the old workers gone and as many new ones running), scale
(where the system can), its supervisor's pid, stop. Configurations are in CONFIGS, quoted in
the report."""
import json
import os
import re
import signal
import subprocess
import tempfile
import time

from common import HERD, ROOT, Herd, free_port, loadgen, start_nginx

PEERS = os.path.join(ROOT, "bench", "peers")
APP_PY = os.path.join(PEERS, "app.py")
APP_JS = os.path.join(PEERS, "app.js")


def python(cache):
    """The benchmark's own Python, bench/peers-setup.sh's venv with gunicorn pinned, for every
    Python row, herd's and the peers': a venv reads no `.pth` file of the system's site-packages,
    where a machine may hook work into every interpreter start (this one's sandbox imports
    certifi there: a stdlib worker's start took 29 ms of CPU with it, 16 ms in the venv)."""
    return os.path.join(cache, "python", "bin", "python")


def children(pid):
    """The pids of `pid`'s children."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return {int(p) for p in f.read().split()}
    except OSError:
        return set()


def cpu_seconds(pid):
    """User and system CPU time `pid` has used, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


def wait_for(what, check, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.01)
    raise SystemExit(f"peers: timed out waiting for {what}")


def somaxconn():
    """net.core.somaxconn: the accept queue herd gives a socket by default."""
    with open("/proc/sys/net/core/somaxconn") as f:
        return f.read().strip()


GUNICORN_CONF = os.path.join(ROOT, "examples", "gunicorn_herd.conf.py")


def gunicorn_under_herd(py, recipe=True):
    """gunicorn as one herd worker, run as docs/interop.md says: with examples/gunicorn_herd.conf.py
    (one sync worker, the app preloaded, herd's backlog kept, READY=1 from the worker right
    before it accepts). Without `recipe`, the plain command the docs gave before: `--preload
    --workers 1 --backlog SOMAXCONN`, READY=1 from the arbiter before it forks its worker."""
    options = ["-c", GUNICORN_CONF] if recipe else ["--preload", "--workers", "1", "--backlog", somaxconn()]
    return [py, "-m", "gunicorn", *options, "--chdir", PEERS, "--log-level", "critical", "app:application"]


HERD_FORK = os.path.join(ROOT, "python", "herd_fork.py")
HERD_GUNICORN = os.path.join(ROOT, "python", "herd_gunicorn.py")


def gunicorn_solo(py):
    """gunicorn's sync worker as one herd worker, without gunicorn's arbiter: python/herd_gunicorn.py
    (docs/interop.md), with the app preloaded."""
    return [py, HERD_GUNICORN, "--preload", "--chdir", PEERS, "--log-level", "critical", "app:application"]


def forked(command):
    """`command` (`[py, ...]`) run through python/herd_fork.py, for `herd run --fork-server`
    (docs/fork-server.md): gunicorn's modules (what its arbiter and a sync worker import at their
    start) are imported once per generation, not per worker."""
    py, *rest = command
    gunicorn = ["gunicorn.app.wsgiapp", "gunicorn.glogging", "gunicorn.arbiter", "gunicorn.workers.sync"]
    runs_gunicorn = rest[:2] == ["-m", "gunicorn"] or rest[:1] == [HERD_GUNICORN]
    preload = [arg for module in gunicorn for arg in ("--preload", module)] if runs_gunicorn else []
    return [py, HERD_FORK, *preload, *rest]


def worker_kinds(py):
    """The herd rows' worker commands by short name, for the scripts that study one kind."""
    return {"py": [py, APP_PY], "gunicorn": gunicorn_under_herd(py),
            "gunicorn-plain": gunicorn_under_herd(py, recipe=False), "gunicorn-solo": gunicorn_solo(py), "node": ["node", APP_JS]}


def run(*args, env=None):
    out = subprocess.run(args, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"peers: {' '.join(args)} failed: {(out.stderr or out.stdout).strip()[-500:]}")
    return out.stdout


class LineClient:
    """A long-lived control client (bench/peers/*_client.*): a command line in, `ok` out."""

    def __init__(self, args, env=None):
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

    def call(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline().strip()
        if reply != "ok":
            raise SystemExit(f"peers: {line}: {reply or 'the client exited'}")

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


class System:
    """A supervisor and its workers; subclasses say how to start, reload and scale."""
    name = kind = ""
    can_scale = False
    workers_wanted = 4
    # "peers": a row of every table; "changes": a herd-only row of re-execs, takeovers, recycling.
    table = "peers"
    # A "changes" row that runs in every repetition, not only the first (the control).
    every_rep = False
    # Whether the steps are windows to cut out of steady time.
    windowed = True
    by_herd = False
    # At most this many reloads (at 2000/s, at saturation), None for as many as the run asks;
    # the report says why (bench/peers_shape.py).
    most_reloads, fewer_why = (None, None), ""

    def __init__(self, port):
        self.port, self.dir = port, tempfile.mkdtemp(prefix="herd-peers-")
        self.address = f"127.0.0.1:{port}"

    def fresh_port(self):
        """A port free right now, for the next start: one picked at the beginning of the run can be
        taken meanwhile by a client socket of the load generator (uWSGI's bind failed so)."""
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"

    def workers(self):
        return children(self.supervisor())

    def settled(self, old=frozenset(), what="workers"):
        """Waits until the wanted number of workers run, none of them in `old`."""
        n = self.workers_wanted
        wait_for(f"{self.name}: {n} {what}", lambda: len(self.workers()) == n and not (self.workers() & old))

    def ready(self):
        self.settled()
        wait_for(f"{self.name} to answer", lambda: self.answers())
        return self

    def answers(self):
        r = loadgen(self.address, 400, 0.1, "--timeout", "1")
        return r["ok"] == r["requests"] > 0

    def changes(self, n):
        """The steps of a run with `n` changes: reloads, unless told otherwise."""
        return [self.reload] * n

    def reload(self):
        old = self.workers()
        self.signal_reload()
        self.settled(old, "new workers")

    def scale(self, n):
        self.workers_wanted = n
        self.signal_scale(n)
        self.settled()


class HerdSystem(System):
    """herd (`herd upgrade`, `herd scale`) running `command` as each worker."""

    extra, can_scale, by_herd = (), True, True

    def __init__(self, port, name, kind, command):
        super().__init__(port)
        self.name, self.kind, self.command = name, kind, command

    def start(self):
        self.herd = Herd(self.command, 4, f"127.0.0.1:{self.port},nonblocking", self.extra).ready()
        return self.ready()

    def supervisor(self):
        return self.herd.proc.pid

    def reload(self):
        self.herd.ctl("upgrade")

    def scale(self, n):
        self.workers_wanted = n
        self.herd.scale(n)

    def stop(self):
        self.herd.stop()


class HerdForked(HerdSystem):
    """herd with `--fork-server`: each generation's workers forked by one fork server."""

    extra = ("--fork-server",)

    def __init__(self, port, name, kind, command):
        super().__init__(port, name, kind, forked(command))

    def workers(self):
        return not_fork_servers(self.supervisor(), super().workers())


def not_fork_servers(herd, children):
    """herd's `children` but its fork servers, which stay in herd's own process group."""
    own = os.getpgid(herd)

    def group(pid):
        try:
            return os.getpgid(pid)
        except ProcessLookupError:
            return own
    return {pid for pid in children if group(pid) != own}


class HerdReexec(HerdSystem):
    """`herd reexec`: herd replaces its own program in place; the workers keep serving."""
    table, can_scale = "changes", False

    def __init__(self, port, command):
        super().__init__(port, "herd re-execs itself", "Python (stdlib server)", command)

    def reload(self):
        self.herd.ctl("reexec")


class HerdTakeover(HerdSystem):
    """A second `herd run --takeover` on the same control socket: its workers start on the
    same listening socket, and once they are ready the old herd stops."""
    table, can_scale = "changes", False
    most_reloads = (5, 3)
    fewer_why = "a herd-only row that checks for 0 failed connections, with no peer to compare; 1.5-2 s a takeover"

    def __init__(self, port, command):
        super().__init__(port, "a new herd takes over", "Python (stdlib server)", command)

    def reload(self):
        old = self.herd
        new = Herd(self.command, 4, f"127.0.0.1:{self.port},nonblocking", self.extra, old.control,
                   takeover=True)
        old.proc.wait(timeout=90)
        self.herd = new.ready()


class HerdControl(HerdSystem):
    """The control: herd serving while nothing changes, with windows as long as a reload of
    herd's at saturation cut out of the run all the same. What the measurement itself gives
    (the load generator's own warm-up, the machine's drift over a run) when no system does
    anything: a share of steady away from 100% here is not a reload's."""
    table, every_rep, can_scale = "changes", True, False
    WINDOW = 2.0

    def __init__(self, port, command):
        super().__init__(port, "nothing changes (control)", "Python (stdlib server)", command)

    def reload(self):
        time.sleep(self.WINDOW)


class HerdRecycle(HerdSystem):
    """`--max-lifetime 2s,jitter=1s`: every worker is recycled (a successor started, then the
    old one stopped, as in an upgrade) about every 3 s, all the time; a step waits until every
    worker has been replaced once, and the whole run counts, not windows."""
    table, windowed, can_scale = "changes", False, False
    extra = ("--max-lifetime", "2s,jitter=1s")

    def __init__(self, port, command):
        super().__init__(port, "herd recycles its workers", "Python (stdlib server)", command)

    def changes(self, n):
        return [self.reload] * max(1, n // 4)

    def reload(self):
        old = self.workers()  # a 5th, a successor starting, is there most of the time
        wait_for(f"{self.name}: every worker recycled", lambda: not (self.workers() & old))


class Gunicorn(System):
    name, kind, can_scale = "gunicorn", "Python (gunicorn sync workers)", True

    def __init__(self, port, py):
        super().__init__(port)
        self.py = py

    def start(self):
        self.proc = subprocess.Popen(
            [self.py, "-m", "gunicorn", "--workers", "4", "--bind", self.address, "--chdir", PEERS,
             "--log-level", "critical", "app:application"], stdin=subprocess.DEVNULL)
        return self.ready()

    def supervisor(self):
        return self.proc.pid

    def signal_reload(self):
        self.proc.send_signal(signal.SIGHUP)

    def signal_scale(self, n):
        now = len(self.workers())
        for _ in range(abs(n - now)):
            self.proc.send_signal(signal.SIGTTIN if n > now else signal.SIGTTOU)
            time.sleep(0.05)  # gunicorn queues at most 5 signals

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=60)


CIRCUS_INI = """[circus]
endpoint = ipc://{d}/endpoint
pubsub_endpoint = ipc://{d}/pubsub
statsd = False
check_delay = 5

[watcher:web]
cmd = {py} {app} --fd $(circus.sockets.web)
use_sockets = True
numprocesses = 4
copy_env = True

[socket:web]
host = 127.0.0.1
port = {port}
"""


class Circus(System):
    name, kind, can_scale = "circus", "Python (stdlib server)", True

    def __init__(self, port, cache):
        super().__init__(port)
        self.bin = os.path.join(cache, "circus", "bin")
        self.py = python(cache)

    def start(self):
        ini = os.path.join(self.dir, "circus.ini")
        with open(ini, "w") as f:
            f.write(CIRCUS_INI.format(d=self.dir, py=self.py, app=APP_PY, port=self.port))
        with open(os.path.join(self.dir, "circusd.log"), "w") as log:  # its tracebacks of busy reloads
            self.proc = subprocess.Popen([os.path.join(self.bin, "circusd"), "--log-level", "warning", ini],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        self.client = LineClient([os.path.join(self.bin, "python"), os.path.join(PEERS, "circus_client.py"),
                                  f"ipc://{self.dir}/endpoint"])
        return self.ready()

    def supervisor(self):
        return self.proc.pid

    def signal_reload(self):
        self.client.call("reload web")

    def signal_scale(self, n):
        now = len(self.workers())
        self.client.call(f"{'incr' if n > now else 'decr'} web {abs(n - now)}")

    def stop(self):
        self.client.close()
        self.proc.terminate()
        self.proc.wait(timeout=60)


class Uwsgi(System):
    """uWSGI's master with 4 workers: a chain reload (`c` on the master FIFO, with
    `--lazy-apps`: one worker at a time) or a graceful reload (`r`: all workers at once). The
    listen queue is net.core.somaxconn, as herd's: uWSGI's default of 100 overflows within
    0.05 s of a pause at 2000 new connections/s, and the dropped SYNs come back a second later."""
    kind = "Python (uWSGI workers)"

    def __init__(self, port, chain):
        super().__init__(port)
        self.chain = chain
        self.name = "uWSGI, chain reload" if chain else "uWSGI, graceful reload"

    def start(self):
        self.fifo, self.log = os.path.join(self.dir, "fifo"), os.path.join(self.dir, "uwsgi.log")
        backlog = somaxconn()
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                ["uwsgi", "--plugin", "python3", "--http-socket", self.address, "--listen", backlog,
                 "--chdir", PEERS, "--wsgi-file", APP_PY, "--master", "--processes", "4",
                 "--master-fifo", self.fifo, "--disable-logging", "--die-on-term",
                 *(["--lazy-apps"] if self.chain else [])],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        return self.ready()

    def chains_completed(self):
        with open(self.log, errors="replace") as f:
            return f.read().count("chain reloading complete")

    def reload(self):
        """A chain reload is over when uWSGI says so: its last new worker is accepting. Before
        that, all 4 workers are already new, and another `c` is ignored ("chain reload already
        running")."""
        if not self.chain:
            return super().reload()
        done = self.chains_completed()
        super().reload()
        wait_for(f"{self.name}: chain reloading complete", lambda: self.chains_completed() > done)

    def supervisor(self):
        return self.proc.pid

    def signal_reload(self):
        with open(self.fifo, "w") as f:
            f.write("c" if self.chain else "r")

    def stop(self):
        workers = self.workers()
        self.proc.send_signal(signal.SIGINT)  # shut down at once
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # a master that waits for its workers for long
            for pid in workers | self.workers() | {self.proc.pid}:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.wait(timeout=30)


class Nginx(System):
    name, kind = "nginx", "C (`return 200`)"

    def start(self):
        self.proc, self.port = start_nginx(workers=4)
        self.address = f"127.0.0.1:{self.port}"
        return self.ready()

    def supervisor(self):
        return self.proc.pid

    def signal_reload(self):
        self.proc.send_signal(signal.SIGHUP)

    def stop(self):
        self.proc.send_signal(signal.SIGQUIT)
        self.proc.wait(timeout=60)


PM2_CONFIG = """module.exports = {{ apps: [{{
  name: "app", script: "{app}", exec_mode: "cluster", instances: 4,
  env: {{ PORT: "{port}" }},{ready}
}}] }};
"""


class Pm2(System):
    """PM2 in cluster mode (its daemon is the cluster's master: it accepts the connections and
    hands them to the workers), `pm2 reload` and `pm2 scale`; with `wait_ready`, a new worker
    counts once it says so (`process.send("ready")`), as PM2's docs recommend."""
    kind, can_scale = "Node", True

    def __init__(self, port, cache, wait_ready):
        super().__init__(port)
        self.module = os.path.join(cache, "pm2", "node_modules", "pm2")
        self.pm2 = os.path.join(self.module, "bin", "pm2")
        self.wait_ready = wait_ready
        self.name = "PM2, wait_ready" if wait_ready else "PM2"
        self.env = dict(os.environ, PM2_HOME=os.path.join(self.dir, "home"))

    def ctl(self, *args):
        return run("node", self.pm2, *args, env=self.env)

    def start(self):
        config = os.path.join(self.dir, "ecosystem.config.js")
        ready = "\n  wait_ready: true, listen_timeout: 3000," if self.wait_ready else ""
        with open(config, "w") as f:
            f.write(PM2_CONFIG.format(app=APP_JS, port=self.port, ready=ready))
        self.ctl("start", config)
        with open(os.path.join(self.env["PM2_HOME"], "pm2.pid")) as f:
            self.daemon = int(f.read())
        self.client = LineClient(["node", os.path.join(PEERS, "pm2_client.js"), self.module], env=self.env)
        return self.ready()

    def supervisor(self):
        return self.daemon

    def signal_reload(self):
        self.client.call("reload app")

    def signal_scale(self, n):
        self.client.call(f"scale app {n}")

    def stop(self):
        self.client.close()
        self.ctl("kill")


def systems(cache, port):
    """Every system, each on its own port from `port` on."""
    node = ["node", APP_JS]
    py = python(cache)
    gunicorn = gunicorn_solo(py)
    return [
        HerdSystem(port, "herd, stdlib Python", "Python (stdlib server)", [py, APP_PY]),
        HerdSystem(port + 1, "herd, gunicorn", "Python (gunicorn, 1 sync worker each)", gunicorn),
        HerdSystem(port + 2, "herd, Node", "Node", node),
        HerdForked(port + 13, "herd --fork-server, stdlib Python", "Python (stdlib server)", [py, APP_PY]),
        HerdForked(port + 14, "herd --fork-server, gunicorn", "Python (gunicorn, 1 sync worker each)", gunicorn),
        Gunicorn(port + 3, py),
        Circus(port + 4, cache),
        Uwsgi(port + 5, chain=True),
        Uwsgi(port + 6, chain=False),
        Nginx(port + 7),
        Pm2(port + 8, cache, wait_ready=False),
        Pm2(port + 9, cache, wait_ready=True),
        HerdReexec(port + 10, [py, APP_PY]),
        HerdTakeover(port + 11, [py, APP_PY]),
        HerdRecycle(port + 12, [py, APP_PY]),
        HerdControl(port + 15, [py, APP_PY]),
    ]


def herd_defaults():
    """`herd run`'s defaults that shape an upgrade, from its help: {"--max-surge": "1", ...}."""
    text = subprocess.run([HERD, "run", "--help"], capture_output=True, text=True).stdout
    found = {}
    for option in ("--max-surge", "--max-starting", "--min-ready", "--starting-nice"):
        match = re.search(rf"^ +{option} <[^>]*>\n(?:(?! {{2,6}}-).*\n)*? +\[default: ([^\]]+)\]", text, re.M)
        if match:
            found[option] = match.group(1)
    if found.get("--max-starting") == "auto":  # one per 4 CPUs herd may run on, at least 1
        found["--max-starting"] = f"auto` (`{max(1, len(os.sched_getaffinity(0)) // 4)}` here)"
    return found


def versions(cache):
    """The version of each system, for the report."""
    def out(*args):
        r = subprocess.run(args, capture_output=True, text=True)
        return (r.stdout + r.stderr).strip().splitlines()[0] if (r.stdout + r.stderr).strip() else "?"
    pm2_package = os.path.join(cache, "pm2", "node_modules", "pm2", "package.json")
    circus = os.path.join(cache, "circus", "bin", "python")
    return {
        "herd": out(HERD, "--version"),
        "Python": out(python(cache), "--version") + " (the benchmark's venv)",
        "gunicorn": out(python(cache), "-m", "gunicorn", "--version"),
        "circus": out(circus, "-c", "import circus; print('circus', circus.__version__)"),
        "uWSGI": "uWSGI " + out("uwsgi", "--version"),
        "nginx": out("/usr/sbin/nginx", "-v"),
        "Node": "Node " + out("node", "--version"),
        "PM2": "PM2 " + json.load(open(pm2_package))["version"],
    }

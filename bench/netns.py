"""Hosts as network namespaces on this machine, for the fleet scenario (bench/fleet.py).

`Network(n)` makes an `lb` namespace holding a bridge and `n` host namespaces, each joined to
the bridge by a veth pair; every address lives inside those namespaces, none in the one this
script runs in. Names carry this process's pid (`herdfleet<pid>-lb`, `herdfleet<pid>-h1`...),
so runs do not collide, and `cleanup_leftovers()` removes what a killed earlier run left:
its namespaces, the processes still in them, and its temporary directories. Needs root.
"""
import glob
import os
import shutil
import signal
import subprocess
import tempfile

PREFIX = "herdfleet"
SUBNET = "10.231.0"
LB_ADDRESS = f"{SUBNET}.1"


def ip(*args):
    """Runs `ip ARGS`; a failure exits with what ip said."""
    out = subprocess.run(["ip", *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"ip {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout


def namespaces():
    """The names of the network namespaces `ip netns` knows."""
    return [line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()]


def owner(name):
    """The pid in a name such as `herdfleet123-lb` or `/tmp/herdfleet123-x`, or None."""
    base = os.path.basename(name)
    if not base.startswith(PREFIX):
        return None
    digits = base[len(PREFIX):].split("-", 1)[0]
    return int(digits) if digits.isdigit() else None


def alive(pid):
    """Whether `pid` is a running fleet script (a reused pid running something else is not,
    one whose arguments name a fleet run's files, `/tmp/herdfleetN-...`, included)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return any(arg.endswith(b"fleet.py") for arg in f.read().split(b"\0"))
    except OSError:
        return False


def remove(name):
    """Kills every process in namespace `name` (all of them were started in it by a fleet
    run), then deletes it."""
    for pid in subprocess.run(["ip", "netns", "pids", name], capture_output=True,
                              text=True).stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    subprocess.run(["ip", "netns", "del", name], capture_output=True)


def cleanup_leftovers():
    """Removes the namespaces and temporary directories of fleet runs that are gone; returns
    the namespaces it removed."""
    removed = []
    for name in namespaces():
        pid = owner(name)
        if pid is not None and not alive(pid):
            remove(name)
            removed.append(name)
    for path in glob.glob(os.path.join(tempfile.gettempdir(), f"{PREFIX}*")):
        pid = owner(path)
        if pid is not None and not alive(pid):
            shutil.rmtree(path, ignore_errors=True)
    return removed


class Network:
    """An `lb` namespace with a bridge at LB_ADDRESS/24 and `hosts` host namespaces at
    SUBNET.11, .12, ...; a temporary directory for their files. Use it with `with`: the
    exit removes everything, also after an error."""

    def __init__(self, hosts):
        tag = f"{PREFIX}{os.getpid()}"
        self.lb = f"{tag}-lb"
        self.hosts = [f"{tag}-h{i + 1}" for i in range(hosts)]
        self.addresses = [f"{SUBNET}.{11 + i}" for i in range(hosts)]
        self.dir = tempfile.mkdtemp(prefix=f"{tag}-")

    def __enter__(self):
        try:
            self._create()
        except BaseException:
            self.close()
            raise
        return self

    def _create(self):
        for name in [self.lb, *self.hosts]:
            ip("netns", "add", name)
            ip("-n", name, "link", "set", "lo", "up")
        ip("-n", self.lb, "link", "add", "br0", "type", "bridge")
        ip("-n", self.lb, "addr", "add", f"{LB_ADDRESS}/24", "dev", "br0")
        ip("-n", self.lb, "link", "set", "br0", "up")
        for i, (host, address) in enumerate(zip(self.hosts, self.addresses)):
            port = f"host{i + 1}"
            ip("-n", self.lb, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", host)
            ip("-n", self.lb, "link", "set", port, "master", "br0", "up")
            ip("-n", host, "addr", "add", f"{address}/24", "dev", "eth0")
            ip("-n", host, "link", "set", "eth0", "up")

    def exec(self, namespace, args):
        """`args` as a command that runs in `namespace` (`ip netns exec` execs it: the process
        started is the command itself)."""
        return ["ip", "netns", "exec", namespace, *args]

    def close(self):
        for name in [*self.hosts, self.lb]:
            if name in namespaces():
                remove(name)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __exit__(self, *exc):
        self.close()

"""How busy the machine was with other work while a system of the peer benchmark ran: the
CPU time of every process outside the benchmark's own process trees (this script and its
children: the load generator, the supervisors, their workers; and any supervisor that left
our tree, like PM2's daemon) and outside the kernel's threads (which carry loopback traffic,
mostly ours). The arithmetic is in peers_stats (unit-tested); this module reads /proc."""
import gzip
import os
import time

from peers_stats import busy_ticks, irq_time_accounted, others_share, tree_ticks

KTHREADD = 2
# Verdicts count when other work took at most this share of the machine in every system's run.
QUIET = 0.10


def processes():
    """{pid: (ppid, utime + stime + cutime + cstime)} of every process, from /proc."""
    procs = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # it exited meanwhile
            continue
        procs[int(name)] = (int(fields[1]), sum(int(v) for v in fields[11:15]))
    return procs


def kernel_config():
    """The running kernel's configuration as text, or "" where it cannot be read."""
    try:
        with gzip.open("/proc/config.gz", "rt") as f:
            return f.read()
    except OSError:
        pass
    try:
        with open(f"/boot/config-{os.uname().release}") as f:
            return f.read()
    except OSError:
        return ""  # then tick-based accounting is assumed, the kernel's default


# Whether the kernel charges interrupt time to the interrupted task (peers_stats.busy_ticks).
INTERRUPTS_IN_TASKS = not irq_time_accounted(kernel_config())


def sample(roots):
    """(seconds, busy ticks of the machine, ticks of `roots`' trees, this process's and the kernel's threads)."""
    with open("/proc/stat") as f:
        busy = busy_ticks(f.readline(), INTERRUPTS_IN_TASKS)
    procs = processes()
    ours = tree_ticks(procs, {os.getpid(), KTHREADD, *roots})
    return time.monotonic(), busy, ours


class OtherWork:
    """The share of the machine other work took between `start` and `stop`."""

    def __init__(self, *roots):
        self.roots = roots
        self.before = sample(roots)

    def stop(self):
        return others_share(self.before, sample(self.roots), os.sysconf("SC_CLK_TCK"), os.cpu_count() or 1)

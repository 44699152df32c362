"""The peer benchmark's arithmetic, with no processes and no clocks: herd-loadgen timelines cut
into steady and reload windows, percentiles, ratios, and the latency-over-time chart.

A timeline is a list of (start_us, latency_us, outcome) from `herd-loadgen --timeline`; a
window is (begin_us, end_us) on the same clock (microseconds from the load's start)."""
import math
import statistics

# After a window ends, requests are neither steady nor inside it for this long: the old
# workers may still be finishing, and the next window's effects should not leak backwards.
SETTLE_US = 250_000
# The first second of a run is left out: connections and caches warm up, and what the system
# before left (its workers' exits, its sockets' close) settles. In the run of 2026-12-03 14:00,
# the first 250 ms had a p99 of 7-52 ms in every row against 0.4-5 ms later, and two herd runs
# that followed the control's saturation run stayed at 3-71 ms for up to 1.5 s: alone, that set
# their steady p99 (3.3 and 57.7 ms, where the other repetitions gave 0.4 and 1.2 ms).
WARMUP_US = 1_000_000


def read_timeline(path):
    """The records of a `--timeline` CSV file."""
    records = []
    with open(path) as f:
        if f.readline().strip() != "start_us,latency_us,outcome":
            raise ValueError(f"{path} is not a herd-loadgen timeline (its first line is not the header)")
        for line in f:
            start, latency, outcome = line.rstrip("\n").split(",")
            records.append((int(start), int(latency), outcome))
    return records


def percentile(values, q):
    """The nearest-rank percentile `q` (0-100) of `values`; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def place(start_us, windows, settle_us=SETTLE_US, warmup_us=WARMUP_US):
    """Where a request that started at `start_us` belongs: "reload" inside a window, "steady"
    outside every window and its settling time, or None (warming up or settling)."""
    if start_us < warmup_us:
        return None
    for begin, end in windows:
        if begin <= start_us <= end:
            return "reload"
    for begin, end in windows:
        if end < start_us <= end + settle_us:
            return None
    return "steady"


def spans(windows, run_end_us, settle_us=SETTLE_US, warmup_us=WARMUP_US):
    """(steady seconds, reload seconds) of a run that sent until `run_end_us`."""
    inside = sum(max(0, min(end, run_end_us) - max(begin, warmup_us)) for begin, end in windows)
    excluded = sum(max(0, min(end + settle_us, run_end_us) - max(end, warmup_us)) for _, end in windows)
    steady = max(0, run_end_us - warmup_us) - inside - excluded
    return steady / 1e6, inside / 1e6


# A reload's cost can fall after its window: a new Node worker serves its first requests slowly
# while V8 compiles the code they run, for a second or more after `herd upgrade` returns (its
# last new worker is ready a --min-ready before the old one stops). `lost` counts what each
# reload lost from its window's beginning until this long after its end, wherever it fell
# (bench/upgrade_phases.py's `--upgrades` measured the same with 3 s; the warm-up's extra cost
# is mostly in a worker's first half second: bench/reload_cost.py).
AFTER_US = 2_000_000


def merged(pairs):
    """`pairs` ((begin, end) spans) with the overlapping ones joined, in order."""
    out = []
    for begin, end in sorted(pairs):
        if out and begin <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((begin, end))
    return out


# The least steady time outside the counted spans that `lost` takes a rate from: at saturation,
# 1 s holds 4,000-20,000 requests.
LEAST_STEADY_US = 1_000_000


def lost(records, windows, run_end_us, after_us=AFTER_US, warmup_us=WARMUP_US):
    """(the seconds of steady throughput a run's reloads lost in all, counted from each window's
    beginning until `after_us` after its end, how many windows that counts): the answered
    requests missing from that time against the rate of the rest of the run after the first
    `warmup_us`; None without windows in the run or with less than LEAST_STEADY_US of steady
    time outside them. A drift of the machine's rate over the run counts too, so a single fast
    reload's figure is noise; a slow reload's is its cost. A window clipped by the run's end
    counts only what the run holds of it."""
    kept = [(max(b, warmup_us), min(e + after_us, run_end_us)) for b, e in windows
            if e > warmup_us and b < run_end_us]
    counted = merged(kept)
    if not counted:
        return None
    answered = [0] * len(counted)
    steady = 0
    for start, _, outcome in records:
        if outcome != "ok" or not warmup_us <= start <= run_end_us:
            continue
        inside = next((i for i, (b, e) in enumerate(counted) if b <= start <= e), None)
        if inside is None:
            steady += 1
        else:
            answered[inside] += 1
    span_s = sum(e - b for b, e in counted) / 1e6
    steady_s = max(0, run_end_us - warmup_us) / 1e6 - span_s
    if steady_s < LEAST_STEADY_US / 1e6 or not steady:
        return None
    return span_s - sum(answered) / (steady / steady_s), len(kept)


def cut(records, windows):
    """A run's figures: failures by kind, p99 steady and inside windows (ms) and their
    ratio, the answered requests per second inside windows as a share of steady, and what each
    reload lost counted until AFTER_US after its window (`lost_s`, `share_counted`). The run
    ends when its last request starts: after that the load generator only waits for answers
    (up to its timeout), and counting that time would dilute the steady rate."""
    run_end_us = max((r[0] for r in records), default=0)
    latency = {"steady": [], "reload": []}
    answered = {"steady": 0, "reload": 0}
    failures = {}
    for start, us, outcome in records:
        if outcome != "ok":
            failures[outcome] = failures.get(outcome, 0) + 1
        where = place(start, windows)
        if where is None or start > run_end_us:
            continue
        latency[where].append(us)
        answered[where] += outcome == "ok"
    steady_s, reload_s = spans(windows, run_end_us)
    lost_s, counted = lost(records, windows, run_end_us) or (None, 0)
    p99 = {k: percentile(v, 99) for k, v in latency.items()}
    rate = {"steady": answered["steady"] / steady_s if steady_s else None,
            "reload": answered["reload"] / reload_s if reload_s else None}
    return {
        "failures": failures,
        "failed": sum(failures.values()),
        "p99_steady_ms": p99["steady"] / 1000 if p99["steady"] is not None else None,
        "p99_reload_ms": p99["reload"] / 1000 if p99["reload"] is not None else None,
        "ratio": p99["reload"] / p99["steady"] if p99["steady"] and p99["reload"] is not None else None,
        "share": rate["reload"] / rate["steady"] if rate["steady"] and rate["reload"] is not None else None,
        "steady_rps": rate["steady"],
        # Per reload, and the share during reloads once what each lost after its window counts.
        "lost_s": lost_s / counted if lost_s is not None else None,
        "share_counted": 1 - lost_s / reload_s if lost_s is not None and reload_s else None,
    }


def median_range(values, fmt="{:.1f}"):
    """`median (low-high)` of the values that are not None, or `-`."""
    values = sorted(v for v in values if v is not None)
    if not values:
        return "-"
    med = fmt.format(statistics.median(values))
    return med if len(values) == 1 or values[0] == values[-1] else \
        f"{med} ({fmt.format(values[0])}-{fmt.format(values[-1])})"


def binned_p99(records, bin_us):
    """[(bin start in seconds, p99 in ms)] over consecutive bins of `bin_us`."""
    bins = {}
    for start, us, _ in records:
        bins.setdefault(start // bin_us, []).append(us)
    return [(b * bin_us / 1e6, percentile(v, 99) / 1000) for b, v in sorted(bins.items())]


COLORS = ["#3b6ea5", "#d9822b", "#5a9e4b", "#c23b3b", "#8e6bb8", "#8c564b", "#e377c2", "#7f7f7f",
          "#bcbd22", "#17becf"]


def line_chart(lines, title, width=760, height=360, low=0.1, high=10_000):
    """An SVG chart of p99 latency (ms, log scale from `low` to `high`) over time (s), one
    line per (name, [(seconds, ms)], [(reload begin s, end s)]); reload windows are shaded
    in the line's color along the bottom."""
    left, right, top, bottom = 60, 190, 30, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    end = max((x for _, points, _ in lines for x, _ in points), default=1) or 1

    def sx(x):
        return left + plot_w * x / end

    def sy(ms):
        ms = min(max(ms, low), high)
        return top + plot_h * (1 - math.log10(ms / low) / math.log10(high / low))

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="11">',
           f'<text x="{left}" y="16" font-size="12">{title}</text>']
    decade = low
    while decade <= high:
        y = sy(decade)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{decade:g} ms</text>')
        decade *= 10
    step = max(1, round(end / 10))
    for s in range(0, int(end) + 1, step):
        out.append(f'<text x="{sx(s):.1f}" y="{top + plot_h + 14}" text-anchor="middle">{s}</text>')
    out.append(f'<text x="{left + plot_w / 2}" y="{height - 8}" text-anchor="middle">seconds into the run</text>')
    for i, (name, points, windows) in enumerate(lines):
        color = COLORS[i % len(COLORS)]
        for begin, finish in windows:
            out.append(f'<rect x="{sx(begin):.1f}" y="{top + plot_h + 18}" '
                       f'width="{max(1, sx(finish) - sx(begin)):.1f}" height="3" fill="{color}" opacity="0.5"/>')
        path = " ".join(f"{sx(x):.1f},{sy(ms):.1f}" for x, ms in points)
        out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.2" points="{path}"/>')
        out.append(f'<rect x="{left + plot_w + 10}" y="{top + 14 * i}" width="10" height="10" fill="{color}"/>')
        out.append(f'<text x="{left + plot_w + 24}" y="{top + 9 + 14 * i}">{name}</text>')
    out.append("</svg>")
    return "\n".join(out)


# The machine's load, as the CPU time other work took while a system ran. A process's own
# figures in /proc/PID/stat (fields 14-17: utime, stime, cutime, cstime, in clock ticks) include
# the children it has reaped, so a tree's sum stays whole while its workers come and go.
def busy_ticks(cpu_line, interrupts_in_tasks=True):
    """The ticks the whole machine spent running something, from /proc/stat's `cpu` line:
    user, nice, system and steal (a hypervisor's other guests), and irq and softirq where
    `interrupts_in_tasks`. With tick-based accounting (no `CONFIG_IRQ_TIME_ACCOUNTING`), a tick
    that lands in an interrupt is charged to the task it interrupted, as system time in its
    /proc/PID/stat (`account_system_time`), while /proc/stat files it under irq or softirq:
    loopback traffic runs its softirqs in the sending task, and left out they made the
    benchmark's own trees outweigh the machine (2026-12-05, a closed loop against nginx over
    5 s: 753 busy ticks without them, 845 in our trees, 253 softirq), which hid other work
    (138 ticks of another nice'd build read as 0). With interrupt time accounted apart, no task
    is charged for it, and counting it would make the benchmark's own traffic other work."""
    fields = [int(v) for v in cpu_line.split()[1:]]
    user, nice, system = fields[0:3]
    irq, softirq, steal = (fields[i] if len(fields) > i else 0 for i in (5, 6, 7))
    return user + nice + system + steal + (irq + softirq if interrupts_in_tasks else 0)


def irq_time_accounted(config):
    """Whether a kernel configuration's text (/proc/config.gz, /boot/config-RELEASE) accounts
    interrupt time apart from tasks' (`CONFIG_IRQ_TIME_ACCOUNTING=y`)."""
    return any(line.strip() == "CONFIG_IRQ_TIME_ACCOUNTING=y" for line in config.splitlines())


def tree_ticks(procs, roots):
    """The ticks used by `roots` and all their descendants, with the children they reaped:
    `procs` is {pid: (ppid, ticks)} for every process."""
    kids = {}
    for pid, (ppid, _) in procs.items():
        kids.setdefault(ppid, []).append(pid)
    seen, todo = set(), [r for r in roots if r in procs]
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo.extend(kids.get(pid, []))
    return sum(procs[pid][1] for pid in seen)


def others_share(before, after, ticks_per_second, cores):
    """The share of the machine's CPU (0 to 1) that other work took between two samples, each
    (seconds, busy ticks of the machine, ticks of the benchmark's own trees and the kernel's
    threads); never below 0 (the counters are read at slightly different moments)."""
    seconds = after[0] - before[0]
    if seconds <= 0:
        return 0.0
    others = (after[1] - before[1]) - (after[2] - before[2])
    return max(0.0, others / (seconds * ticks_per_second * cores))

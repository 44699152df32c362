"""The peer benchmark's run shape, with no processes and no clocks: how many reloads each
system gets, and where a run's time went.

The issue asks for 10 reloads at 2000/s and 5 at saturation per repetition. A herd-only row
that checks for 0 failed connections (the takeover) can get fewer, set by its `most_reloads`;
the report says which and why.

A run also stops reloading early once its reload windows hold enough time ([`ENOUGH`]): a
slow reload's window holds many times the requests of a fast one's (herd's gunicorn rows take
about 19 s a reload at saturation, nginx 0.13 s), so 5 of them add minutes and no precision.
The steady time a run stopped early lacks is added after its last reload ([`top_up`]), so its
steady baseline is as long as with every reload."""

from peers_stats import SETTLE_US

# The phases of one system's run, in order, as `one_system` times them.
PHASES = ("start", "idle", "open", "closed", "scale", "scale_closed", "stop")


def running_order(systems, rep):
    """The systems of repetition `rep` (from 0): every repetition starts one system further on,
    so no system always runs first or after the same one. herd's rows of other changes
    (re-exec, takeover, recycling: `table == "changes"`) run in the first repetition only: they
    check for 0 failed connections, with no peer to compare, and their changes add up as well
    in one run. The control (`every_rep`) runs in each, as a peer does."""
    if rep > 0:
        systems = [s for s in systems if s.table != "changes" or getattr(s, "every_rep", False)]
    if not systems:
        return []
    k = rep % len(systems)
    return systems[k:] + systems[:k]


def reload_counts(most_reloads, reloads, saturation_reloads):
    """(reloads at 2000/s, reloads at saturation) for a system whose caps are `most_reloads`
    (each None for no cap)."""
    return tuple(n if cap is None else min(n, cap) for n, cap in zip((reloads, saturation_reloads), most_reloads))


# (at least this many reloads, and windows of this many seconds in all) after which a run's
# reloads may stop, by load: 2000/s gives 20,000 requests in 10 s of windows; at saturation,
# 15 s hold 60,000-170,000.
ENOUGH = {"open": (3, 10.0), "closed": (2, 15.0)}


def enough(durations, asked, load):
    """Whether a run under `load` ("open" or "closed") whose reload windows so far took
    `durations` seconds may stop reloading: all `asked` ran, or [`ENOUGH`] did."""
    at_least, seconds = ENOUGH[load]
    return len(durations) >= asked or (len(durations) >= at_least and sum(durations) >= seconds)


def top_up(done, asked, gap):
    """Seconds of steady load to add after the last of `done` reloads, where `asked` were asked
    `gap` seconds apart: the steady time the missing gaps would have given (a gap is steady but
    for its first SETTLE_US)."""
    return max(0, asked - done) * max(0.0, gap - SETTLE_US / 1e6)


def stopped_early(results, scenario):
    """{system: [reloads in each repetition]} of `scenario` ("open", "closed"), for the systems
    that ran fewer than they were asked in a repetition (`asked`; runs saved before it ran all)."""
    ran = {name: [(len(run[scenario]["durations"]), run[scenario].get("asked", 0)) for run in runs
                  if scenario in run] for name, runs in results.items()}
    return {name: [n for n, _ in counts] for name, counts in ran.items() if any(n < asked for n, asked in counts)}


def fewer_reloads(systems, reloads, saturation_reloads):
    """[(name, at 2000/s, at saturation, why)] of the systems that get fewer reloads than asked."""
    out = []
    for s in systems:
        got = reload_counts(s.most_reloads, reloads, saturation_reloads)
        if got != (reloads, saturation_reloads):
            out.append((s.name, *got, s.fewer_why))
    return out


def time_spent(results):
    """[(name, seconds, {phase: seconds})] over every repetition, the longest first, from each
    run's `phases` (older saved runs have none and count nothing)."""
    out = []
    for name, runs in results.items():
        phases = {}
        for run in runs:
            for phase, seconds in run.get("phases", {}).items():
                phases[phase] = phases.get(phase, 0.0) + seconds
        out.append((name, sum(phases.values()), phases))
    return sorted(out, key=lambda row: -row[1])


def time_line(spent):
    """`herd, Node 162 s (open 40, closed 95, ...)`: one system's share of a run, phases in order."""
    name, total, phases = spent
    parts = ", ".join(f"{p.replace('_', ' ')} {phases[p]:.0f}" for p in PHASES if p in phases)
    return f"{name} {total:.0f} s ({parts})"

"""The peer benchmark's report: tables (medians and ranges over the repetitions), where herd is
not best and why, the targets' verdicts, and the latency-over-time chart."""
import math
import statistics

from peers_load import QUIET
from peers_prose import APP_SPEED, CAREFUL, NODE_MISS, PYTHON_MISS, PYTHON_MISS_2000, SEE_BELOW, START_UP, TICKS
from peers_shape import ENOUGH, fewer_reloads, stopped_early, time_line, time_spent
from peers_stats import AFTER_US, SETTLE_US, WARMUP_US, line_chart, median_range

# (label, scenario, key, index of a step's duration or None, lower is better, format, why)
COLUMNS = [
    ("failed at 2000/s", "open", "failed", None, True, "{:.0f}", "see the failures by kind"),
    ("p99 steady at 2000/s", "open", "p99_steady_ms", None, True, "{:.2f} ms", APP_SPEED),
    ("p99 in reloads at 2000/s", "open", "p99_reload_ms", None, True, "{:.1f} ms", START_UP),
    ("p99 ratio at 2000/s", "open", "ratio", None, True, "{:.1f}x", START_UP),
    ("reload duration", "open", "durations", None, True, "{:.2f} s", CAREFUL),
    ("supervisor RSS", "open", "rss", None, True, "{:.1f} MiB", "nginx's master is a small C process"),
    ("supervisor CPU at 2000/s", "open", "load_cpu", None, True, "{:.1f}%", TICKS),
    ("failed at saturation", "closed", "failed", None, True, "{:.0f}", "see the failures by kind"),
    ("steady req/s at saturation", "closed", "steady_rps", None, False, "{:.0f}", APP_SPEED),
    ("throughput share at saturation", "closed", "share", None, False, "{:.0%}",
     "at saturation every process competes for the same 2 cores, the load generator included: new workers "
     "starting take CPU from serving ones"),
    ("p99 steady at saturation", "closed", "p99_steady_ms", None, True, "{:.2f} ms", APP_SPEED),
    ("p99 in reloads at saturation", "closed", "p99_reload_ms", None, True, "{:.1f} ms", START_UP),
    ("p99 ratio at saturation", "closed", "ratio", None, True, "{:.1f}x", START_UP),
    ("reload duration at saturation", "closed", "durations", None, True, "{:.2f} s",
     CAREFUL + "; at saturation, a replacement that starts at a low priority (`--starting-nice`) gets only the "
     "CPU the serving workers leave, so it takes longer to be ready"),
    ("failed while scaling", "scale", "failed", None, True, "{:.0f}", "see the failures by kind"),
    ("p99 steady, scaling run", "scale", "p99_steady_ms", None, True, "{:.2f} ms", APP_SPEED),
    ("p99 while scaling", "scale", "p99_reload_ms", None, True, "{:.1f} ms", START_UP),
    ("p99 ratio while scaling", "scale", "ratio", None, True, "{:.1f}x", START_UP),
    ("4 -> 8 duration", "scale", "durations", 0, True, "{:.2f} s",
     "herd's `scale` returns once the new workers are ready (READY=1), not when they are forked"),
    ("8 -> 4 duration", "scale", "durations", 1, True, "{:.2f} s",
     "herd's `scale` returns once the stopped workers have finished their connections and exited"),
]



def up(x):
    """`x` to a tenth, rounded up: a ratio just over a target never shows as the target."""
    return f"{math.ceil(round(x * 10, 6)) / 10:.1f}"


def down(x):
    """`x` to a tenth, rounded down: a share just under a target never shows as the target."""
    return f"{math.floor(round(x * 10, 6)) / 10:.1f}"

def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def column(results, name, scenario, key):
    return [run[scenario][key] for run in results.get(name, []) if scenario in run]


def scenario_runs(results, name, scenario):
    """A system's figures of `scenario`, one per repetition that ran it."""
    return [run[scenario] for run in results.get(name, []) if scenario in run]


def failures(results, name, scenario):
    runs = [run[scenario] for run in results.get(name, []) if scenario in run]
    if not runs:
        return "-"
    kinds = {}
    for r in runs:
        for kind, n in r["failures"].items():
            kinds[kind] = kinds.get(kind, 0) + n
    detail = ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
    text = median_range([r["failed"] for r in runs], "{:.0f}")
    return f"**{text}**" + (f" ({detail} in all)" if detail else "")


def ratio(results, name, scenario):
    """`2.2x (1.4x-3.0x)`, or `-`."""
    return median_range(column(results, name, scenario, "ratio"), "{:.1f}x")


def durations(results, name, scenario, index=None):
    values = [statistics.median(r[scenario]["durations"]) if index is None else r[scenario]["durations"][index]
              for r in results.get(name, []) if scenario in r]
    return median_range(values, "{:.2f}")


def control_window(systems):
    """How long the control's windows are, in seconds (`-` without a control)."""
    return next((f"{s.WINDOW:g}" for s in systems if getattr(s, "every_rep", False)), "-")


def changes_table(systems, results, errors):
    """herd's other changes (re-exec, takeover, recycling) and the control, at 2000/s and at
    saturation."""
    rows = ["| change | load | failed per run (by kind) | p99 steady ms | p99 in changes ms | ratio | "
            "req/s steady | in changes, share of steady | lost per change, s of steady | change s |",
            "|" + "---|" * 10]
    for s in systems:
        n = s.name
        if s.table != "changes":
            continue
        if n not in results:
            rows.append(f"| {n} | did not run: {why_not(errors, n)} |" + " |" * 8)
            continue
        for scenario, load in (("open", "2000/s"), ("closed", f"saturation ({32} connections)")):
            share = [v * 100 if v is not None else None for v in column(results, n, scenario, "share")]
            took = durations(results, n, scenario) if s.windowed else "all the time"
            # At 2000/s the load is the offered rate: nothing a change costs shows as lost.
            lost = [r.get("lost_s") for r in scenario_runs(results, n, scenario)] if scenario == "closed" else []
            rows.append(
                f"| {n} | {load} | {failures(results, n, scenario)} | "
                f"{median_range(column(results, n, scenario, 'p99_steady_ms'), '{:.2f}')} | "
                f"{median_range(column(results, n, scenario, 'p99_reload_ms'))} | "
                f"{ratio(results, n, scenario)} | "
                f"{median_range(column(results, n, scenario, 'steady_rps'), '{:.0f}')} | "
                f"{median_range(share, '{:.0f}')}% | {median_range(lost, '{:.2f}')} | {took} |")
    return "\n".join(rows).replace("| -% |", "| - |")


def saturated_scaling_table(systems, results):
    """herd's scaling 4 -> 8 -> 4 at saturation (the peers' scaling runs at 2000/s only)."""
    rows = ["| system | failed per run (by kind) | p99 steady ms | p99 while scaling ms | ratio | req/s steady | "
            "while scaling, share of steady | 4 -> 8 s | 8 -> 4 s |", "|" + "---|" * 9]
    for s in systems:
        n = s.name
        if not (s.by_herd and s.can_scale and any("scale_closed" in r for r in results.get(n, []))):
            continue
        share = [v * 100 if v is not None else None for v in column(results, n, "scale_closed", "share")]
        rows.append(f"| {n} | {failures(results, n, 'scale_closed')} | "
                    f"{median_range(column(results, n, 'scale_closed', 'p99_steady_ms'), '{:.2f}')} | "
                    f"{median_range(column(results, n, 'scale_closed', 'p99_reload_ms'))} | "
                    f"{ratio(results, n, 'scale_closed')} | "
                    f"{median_range(column(results, n, 'scale_closed', 'steady_rps'), '{:.0f}')} | "
                    f"{median_range(share, '{:.0f}')}% | {durations(results, n, 'scale_closed', 0)} | "
                    f"{durations(results, n, 'scale_closed', 1)} |")
    return "\n".join(rows) if len(rows) > 2 else "(not measured in this run)"


def why_not(errors, name):
    """What went wrong with a system's runs (older saved runs kept one message, newer a list)."""
    found = errors.get(name, "?")
    return "; ".join(found) if isinstance(found, list) else found


def failed_runs(errors):
    """A paragraph naming every run that failed (its figures are missing from the medians)."""
    if not errors:
        return ""
    lines = [f"- {name}: {why_not(errors, name)}" for name in errors]
    return "Runs that failed (their cells hold the other repetitions' figures):\n\n" + "\n".join(lines) + "\n\n"


def tables(systems, results, errors):
    """The three scenario tables of every system (herd's other changes have their own)."""
    systems = [s for s in systems if s.table == "peers"]
    open_rows = ["| system | workers | failed per run (by kind) | p99 steady ms | p99 in reloads ms | ratio | "
                 "reload s | supervisor RSS MiB | supervisor CPU idle % | at 2000/s % | other work % |",
                 "|" + "---|" * 11]
    closed_rows = ["| system | failed per run (by kind) | steady req/s | in reloads, share of steady | "
                   "lost per reload, s of steady | p99 steady ms | p99 in reloads ms | ratio | reload s |",
                   "|" + "---|" * 9]
    scale_rows = ["| system | failed per run (by kind) | p99 steady ms | p99 while scaling ms | ratio | "
                  "4 -> 8 s | 8 -> 4 s |", "|" + "---|" * 7]
    for s in systems:
        n = s.name
        if n not in results:
            open_rows.append(f"| {n} | did not run: {why_not(errors, n)} |" + " |" * 9)
            continue
        idle = median_range([r.get("idle_cpu") for r in results[n]], "{:.1f}")
        open_rows.append(
            f"| {n} | {s.kind} | {failures(results, n, 'open')} | "
            f"{median_range(column(results, n, 'open', 'p99_steady_ms'), '{:.2f}')} | "
            f"{median_range(column(results, n, 'open', 'p99_reload_ms'))} | "
            f"{ratio(results, n, 'open')} | {durations(results, n, 'open')} | "
            f"{median_range(column(results, n, 'open', 'rss'))} | {idle} | "
            f"{median_range(column(results, n, 'open', 'load_cpu'))} | "
            f"{median_range([100 * r['others'] for r in results[n] if 'others' in r], '{:.0f}')} |")
        share = [v * 100 if v is not None else None for v in column(results, n, "closed", "share")]
        closed_rows.append(
            f"| {n} | {failures(results, n, 'closed')} | "
            f"{median_range(column(results, n, 'closed', 'steady_rps'), '{:.0f}')} | {median_range(share, '{:.0f}')}% | "
            f"{median_range([r.get('lost_s') for r in scenario_runs(results, n, 'closed')], '{:.2f}')} | "
            f"{median_range(column(results, n, 'closed', 'p99_steady_ms'), '{:.2f}')} | "
            f"{median_range(column(results, n, 'closed', 'p99_reload_ms'))} | "
            f"{ratio(results, n, 'closed')} | {durations(results, n, 'closed')} |")
        if s.can_scale:
            scale_rows.append(
                f"| {n} | {failures(results, n, 'scale')} | "
                f"{median_range(column(results, n, 'scale', 'p99_steady_ms'), '{:.2f}')} | "
                f"{median_range(column(results, n, 'scale', 'p99_reload_ms'))} | "
                f"{ratio(results, n, 'scale')} | {durations(results, n, 'scale', 0)} | "
                f"{durations(results, n, 'scale', 1)} |")
        else:
            scale_rows.append(f"| {n} | no command to scale a running pool |" + " |" * 5)
    return "\n".join(open_rows), "\n".join(closed_rows), "\n".join(scale_rows)


def column_value(results, name, scenario, key, index):
    """A system's median of one column, or None."""
    runs = [run[scenario] for run in results.get(name, []) if scenario in run]
    if key == "durations":
        return med([statistics.median(r[key]) if index is None else r[key][index] for r in runs
                    if len(r[key]) > (index or 0)])
    return med([r.get(key) for r in runs])


def counted_share(results, name):
    """(the share verdicts read, in %, one per repetition; whether it counts what each reload
    lost after its window): `share_counted`, or the window's own `share` in runs saved before
    it was measured."""
    got = scenario_runs(results, name, "closed")
    if got and all(r.get("share_counted") is not None for r in got):
        return [100 * r["share_counted"] for r in got], True
    return [100 * r["share"] for r in got if r.get("share") is not None], False


def not_best(systems, results):
    """Lines saying, for every column where herd's best row loses, to whom and why."""
    systems = [s for s in systems if s.table == "peers"]
    herd = [s.name for s in systems if s.by_herd and s.name in results]
    others = [s.name for s in systems if not s.by_herd and s.name in results]
    lines = []
    for label, scenario, key, index, lower, fmt, why in COLUMNS:
        scored = [(v, n) for n in herd + others
                  if (v := column_value(results, n, scenario, key, index)) is not None]
        pick = min if lower else max
        herd_scored = [(v, n) for v, n in scored if n in herd]
        if not herd_scored:
            continue
        (best_value, best), (herd_value, herd_name) = pick(scored), pick(herd_scored)
        if best in herd or fmt.format(herd_value) == fmt.format(best_value):
            continue
        lines.append(f"- {label}: {best} {fmt.format(best_value)}, herd's best {fmt.format(herd_value)} "
                     f"({herd_name}). Why: {why}.")
    idle = {n: med([r.get("idle_cpu") for r in results[n]]) for n in herd + others}
    idle = {n: v for n, v in idle.items() if v is not None}
    herd_idle = min((idle[n] for n in herd if n in idle), default=None)
    if herd_idle is not None and herd_idle > min(idle.values()):
        lines.append(f"- idle CPU: herd {herd_idle:.1f}%, lowest {min(idle.values()):.1f}%. Why: {TICKS}.")
    return lines or ["- herd is best on every column above."]


def busy(runs):
    """Whether other work took more than QUIET of the machine in any of these runs (figures
    with an `others` share); runs that did not measure it count as busy."""
    return any(run.get("others", 1.0) > QUIET for run in runs)


def python_row(name):
    """Whether the herd row `name` runs Python workers (stdlib or gunicorn)."""
    return "Python" in name or "gunicorn" in name


def node_row(name):
    """Whether the herd row `name` runs Node workers."""
    return "Node" in name


def verdicts(systems, results, scale):
    """One line per target of issue 19 that this scenario measures, with the scale targets'
    (bench/scale_targets.py). A timing measured while other work took the machine (in any run
    of the system it is about) is **inconclusive**, and so is a missed 0-failed target
    (timeouts can be the machine's); 0 failed stays met, and a memory figure (RSS) stands."""
    lines = measured_verdicts(systems, results)
    lines += [(line, not isinstance(scale, dict) or busy([scale])) for line in scale_verdicts(scale)]
    return [v if not noisy or (v.startswith("0 failed") and "**met**" in v) or "not measured" in v
            or "RSS" in v else
            v.replace("**met**", "**inconclusive**").replace("**missed**", "**inconclusive**")
            + " (other work took the machine in its runs, or its steady baseline varied: run again on a "
            "quiet one)" for v, noisy in lines]


def scale_verdicts(scale):
    """The scale targets' lines: `scale` is bench/scale_targets.py's figures, or why there are none."""
    if isinstance(scale, str):
        return [f"scale targets (4096 native workers): not measured: {scale}."]
    try:
        from scale_targets import verdict_lines
    except ImportError:
        return ["scale targets (4096 native workers): not measured: bench/scale_targets.py is missing."]
    return [line[2:] if line.startswith("- ") else line for line in verdict_lines(scale)]


def failed_by(results, names, scenarios):
    """Failed connections in these systems' runs of these scenarios, in all."""
    return sum(run[sc]["failed"] for n in names for run in results.get(n, []) for sc in scenarios if sc in run)


def zero_failed(what, failed, runs):
    return (f"0 failed connections {what}: **{'met' if failed == 0 else 'missed'}** ({failed} failed in "
            f"{runs} run{'s' if runs != 1 else ''}).")


# A ratio to steady p99 needs a steady baseline: repetitions whose steady p99 differ more than this
# were disturbed (by something the load rule did not see), and the ratio verdict is inconclusive.
UNSTEADY = 3.0


def unsteady(results, name, scenario):
    """` (steady p99 0.4-12.0 ms across repetitions)` when it varied more than UNSTEADY times, else ``."""
    values = [v for run in results.get(name, []) if (v := run.get(scenario, {}).get("p99_steady_ms"))]
    if len(values) < 2 or max(values) <= UNSTEADY * min(values):
        return ""
    return f" (steady p99 {min(values):.2f}-{max(values):.2f} ms across repetitions)"


def measured_verdicts(systems, results):
    """(line, whether other work took the machine in the runs it is about)."""
    upgrades = [s.name for s in systems if s.by_herd and s.table == "peers" and s.name in results]
    runs = sum(len(results[n]) for n in upgrades)
    every = busy([run for n in upgrades for run in results[n]])
    out = [] if not upgrades else [(zero_failed(f"in herd's upgrades ({len(upgrades)} worker kinds) at {2000}/s and at saturation",
                        failed_by(results, upgrades, ("open", "closed")), runs), every),
           (zero_failed(f"in herd's scaling 4 -> 8 -> 4 at {2000}/s and at saturation",
                        failed_by(results, upgrades, ("scale", "scale_closed")), runs), every)]
    for s in systems:
        if s.table == "changes" and s.name in results:
            out.append((zero_failed(f"while {s.name} at {2000}/s and at saturation",
                                    failed_by(results, [s.name], ("open", "closed")), len(results[s.name])),
                        busy(results[s.name])))
    for n in upgrades:
        noisy = busy(results[n])
        at_2000 = med(column(results, n, "open", "ratio"))
        shares, counted = counted_share(results, n)
        share = med(shares)
        sat = med(column(results, n, "closed", "ratio"))
        if at_2000 is not None:
            why = SEE_BELOW if at_2000 > 2 and python_row(n) else ""
            verdict = against(column(results, n, "open", "ratio"), 2, False, "{:.1f}x")
            out.append((f"{n}: p99 inside reloads at 2000/s at most 2x steady: {up(at_2000)}x, "
                        f"{verdict}{unsteady(results, n, 'open')}.{why}",
                        noisy or bool(unsteady(results, n, "open"))))
        if share is not None:
            said = python_row(n) and (at_2000 or 0) > 2  # SEE_BELOW is on the line above
            why = SEE_BELOW if share < 95 and (python_row(n) or node_row(n)) and not said else ""
            verdict = against(shares, 95, True, "{:.0f}%")
            if node_row(n) and not counted and "**met**" in verdict:
                # A run saved before the loss after the window was counted: a new Node
                # worker's warm-up may have fallen after the short windows, in steady time.
                verdict = ("**inconclusive** (it reads met in the windows alone, and a new Node worker's "
                           "warm-up falls after short reload windows, in time they count as steady)")
            window = med(column(results, n, "closed", "share"))
            how = (f" counting what each reload lost until {AFTER_US / 1e6:g} s after its window "
                   f"({down(window * 100)}% in the windows alone)" if counted and window is not None else "")
            out.append((f"{n}: throughput during reloads at saturation at least 95% of steady: {down(share)}%"
                        f"{how}, {verdict}.{why}", noisy))
        if sat is not None:
            verdict = against(column(results, n, "closed", "ratio"), 1.5, False, "{:.1f}x")
            out.append((f"{n}: p99 inside reloads at saturation at most 1.5x steady: {up(sat)}x, "
                        f"{verdict}{unsteady(results, n, 'closed')}.",
                        noisy or bool(unsteady(results, n, "closed"))))
    return out


def against(values, target, at_least, fmt):
    """The verdict of repetitions that read `values` on a target of at least (`at_least`) or at
    most `target`: **met** or **missed** when they all fall on one side of it, and
    **inconclusive** when they fall on both: the run cannot tell which side the system is on
    (at saturation, 5 s periods of steady throughput differ by up to 20% on this host)."""
    values = [v for v in values if v is not None]
    sides = {v >= target if at_least else v <= target for v in values}
    if len(sides) == 1:
        return "**met**" if sides.pop() else "**missed**"
    low, high = fmt.format(min(values)), fmt.format(max(values))
    return (f"**inconclusive** (its repetitions read {low} to {high}, on both sides of the target: more "
            "repetitions tell, `python3 bench/peers.py --reps 3`)")


def fewer_text(systems, args):
    """The systems that get fewer reloads than the run asks, and why, as sentences."""
    return "".join(f"Fewer reloads for {name}: {opens} at 2000/s and {closes} at saturation ({why}). "
                   for name, opens, closes, why in fewer_reloads(systems, args.reloads, args.saturation_reloads))


def early_text(results):
    """The rule that stops a run's reloads early, and the systems it stopped, as sentences."""
    (open_least, open_s), (closed_least, closed_s) = ENOUGH["open"], ENOUGH["closed"]
    rule = (f"A run stops reloading early once at least {open_least} reloads' windows hold {open_s:g} s in all "
            f"at 2000/s, or {closed_least} reloads' {closed_s:g} s at saturation (a slow reload's window holds "
            "many times the requests of a fast one's: a reload of herd's gunicorn rows takes seconds at "
            "saturation, nginx's a tenth of one), then keeps the load on for the steady time the reloads left "
            "out would have given. ")
    where = {"2000/s": stopped_early(results, "open"), "saturation": stopped_early(results, "closed")}
    stopped = []
    for name in results:
        parts = [f"{', '.join(map(str, runs[name]))} at {load}" for load, runs in where.items() if name in runs]
        if parts:
            stopped.append(f"{name} {' and '.join(parts)}")
    return rule + (f"Stopped early, reloads per repetition: {'; '.join(stopped)}. " if stopped else "")


def spent_text(results):
    """A paragraph of where the time went, from the runs' timed phases, or nothing."""
    spent = [row for row in time_spent(results) if row[1] > 0]
    return ("\n\nWhere the time went, by system over all repetitions (start, idle, each load's run with its "
            "steps, stop): " + "; ".join(map(time_line, spent)) + ".") if spent else ""


def write_report(args, systems, results, errors, cross, versions, loads, took, svg, machine, scale,
                 defaults):
    open_table, closed_table, scale_table = tables(systems, results, errors)
    targets = verdicts(systems, results, scale)
    explained = [v.split(":")[0] for v in targets if SEE_BELOW in v]
    known = (f"\n{PYTHON_MISS} {PYTHON_MISS_2000}\n" if any(map(python_row, explained)) else "") + \
        (f"\n{NODE_MISS}\n" if any(map(node_row, explained)) else "")
    lines = [(s.name, run["open"]["chart"][0], run["open"]["chart"][1])
             for s in systems if s.table == "peers" for run in results.get(s.name, [])[:1]]
    with open(svg, "w") as f:
        f.write(line_chart(lines, f"p99 latency per 250 ms at {2000} new connections/s through "
                                  "the reloads of each system's first repetition"))
    cross_rows = ["| target | herd-loadgen req/s | wrk req/s | herd-loadgen p99 ms | wrk p99 ms |",
                  "|---|---|---|---|---|"]
    for name, rate, p99, wrk_rate, wrk_p99 in cross:
        cross_rows.append(f"| {name} | {rate:.0f} | {wrk_rate or 0:.0f} | {p99:.2f} | {wrk_p99 or 0:.2f} |")
    quick = " --quick" if args.quick else ""
    version_line = "; ".join(versions.values())
    others = [run["others"] for runs in results.values() for run in runs if "others" in run]
    noise = (f"other work took {median_range([100 * v for v in others], '{:.0f}')}% of the machine's CPU "
             f"while a system ran (median and range over the {len(others)} system runs: CPU time of the "
             "processes outside the benchmark's own trees and the kernel's threads, from /proc; per system in "
             "the first table's last column); "
             f"load average {min(loads):.1f} to {max(loads):.1f} (1-minute, the benchmark's own load "
             "included)") if others else f"load average {min(loads):.1f} to {max(loads):.1f}"
    # Other work on the machine's cores makes latencies the scheduler's, not the systems'.
    noisy = not others or max(others) > QUIET
    caveat = (f"**Read the comparisons with care**: other work on the shared machine took up to "
              f"{max(others, default=1):.0%} of its CPU while a system ran (the rule: at most "
              f"{QUIET:.0%}; the last column of the first table says which systems' runs it hit), so "
              "those systems' latencies are partly the scheduler's; a target verdict is inconclusive "
              "when it hit the runs the verdict is about, and only gross differences (failed "
              "connections, supervisor RSS and CPU, reload durations) carry over from them. Run "
              "`bench/run peers` again on "
"a quiet machine.\n\n") if noisy else ""
    with open(args.report, "w") as f:
        f.write(f"""# Benchmark: herd and its peers

Command: `python3 bench/peers.py --reps {args.reps}{quick}` (or `bench/run peers`; its own setup,
`bench/peers-setup.sh`, installs PM2, circus and a Python venv with gunicorn pinned into a cache
directory)

Machine: {machine}; {noise}. The whole scenario took {took:.0f} s.{spent_text(results)}

{caveat}Versions: {version_line}.

Method: every system runs 4 workers of the same apps on loopback: `bench/peers/app.py` (a WSGI
app: served by gunicorn, uWSGI, and by examples/hello.py's stdlib accept loop under circus and
herd) and `bench/peers/app.js` (a Node `http` server: under PM2's cluster mode and herd). Every
Python row but uWSGI's (Debian's embedded Python) runs the benchmark's own venv: a venv reads no
`.pth` file of the system's site-packages, where this machine's sandbox imports certifi at every
interpreter start (a stdlib worker's start took 29 ms of CPU with it, 16 ms in the venv:
`bench/reload_cost.py`'s start cost, 7 starts each, 2026-12-01). The apps' modules are compiled
to bytecode by the setup, as a first run leaves them on a usual host: this machine sets
`PYTHONDONTWRITEBYTECODE`, and before 2026-12-04 every stdlib worker's start (herd's, circus's)
compiled `examples/hello.py` again (1.4 ms); `bench/peers/app.py` is imported as a module by
gunicorn and uWSGI (run as a script, it is compiled at each start, as Python does).
Configurations: herd `run -w 4 --ready notify -b http=127.0.0.1:PORT,nonblocking` (defaults
otherwise: {', '.join(f'`{k} {v}`' for k, v in defaults.items())}), running `python3 app.py`, `python3
python/herd_gunicorn.py --preload --chdir bench/peers --log-level critical app:application` (as docs/interop.md says to run gunicorn under
herd: gunicorn's sync worker is the herd worker itself, with no gunicorn arbiter, the app preloaded,
herd's accept queue kept, and READY=1 right before it accepts) or `node app.js` (which says
READY=1 with `systemd-notify` before it takes its first connection); the `herd --fork-server` rows add `--fork-server` and run the
same Python commands through `python/herd_fork.py` (for gunicorn with `--preload` of `gunicorn.app.wsgiapp`,
`gunicorn.glogging`, `gunicorn.arbiter` and `gunicorn.workers.sync`: docs/fork-server.md), so that each generation
loads once and its workers are forked; gunicorn `--workers 4` (sync), HUP to reload and
TTIN/TTOU to scale; circus with a `[socket:web]` and a watcher of 4 `app.py --fd
$(circus.sockets.web)` (`circusctl reload web`, `incr`/`decr`); uWSGI `--master --processes 4
--http-socket --listen SOMAXCONN` (the accept queue herd gets; uWSGI's default of 100 overflows
within 0.05 s of a pause at 2000/s, and each dropped SYN costs its client a 1 s retransmission)
with `--lazy-apps` and `c` on its master FIFO (chain reload: a window ends when uWSGI logs
"chain reloading complete", once its last new worker accepts; before that another `c` is
ignored), or without and `r` (graceful reload: the master waits for its workers to finish,
re-executes itself and forks new ones, so nothing accepts meanwhile; checked on 2026-12-01 at
2000/s through 3 graceful reloads: with `--listen 100` the kernel counted 602 listen overflows
and the steady p99 was 1361 ms, with SOMAXCONN 0 and 1.1 ms, while the p99 inside reloads
stayed about 1.07 s, the pause itself); nginx `worker_processes 4`, `return 200`, SIGHUP; PM2 `exec_mode: "cluster",
instances: 4` (`pm2 reload`, `pm2 scale`), and with `wait_ready: true, listen_timeout: 3000`.
Each system runs {args.reps} time(s), systems interleaved (the order rotates each repetition;
herd's rows of other changes, below, run in the first repetition only, but for the control), and each time: {args.idle:g} s idle (the supervisor's CPU; first repetition only), then `herd-loadgen --timeline` at
2000 new connections/s, open loop (5 s timeout), through {args.reloads} reloads {args.gap:g} s
apart after {args.open_lead:g} s steady{f" and before {args.open_tail:g} s more" if args.open_tail else ""}; then closed loop with {32} connections (a new one per request)
through {args.saturation_reloads} reloads {args.closed_gap:g} s apart after {args.closed_lead:g} s{f" and before {args.closed_tail:g} s more" if getattr(args, "closed_tail", 0) else ""} (steady time between the
reloads as well as before them); then 4 -> 8 -> 4 workers at 2000/s (herd also at saturation,
in the first repetition). {early_text(results)}{fewer_text(systems, args)}A reload window
runs from the command until the old workers are gone and 4 new ones run (for herd: until
`herd upgrade` returns); steady time is outside the windows, less {SETTLE_US // 1000} ms after each and the
first {WARMUP_US / 1e6:g} s; a run ends with its last request's start (the load generator then only waits
for the last answers). Throughput is the answered requests that started in the windows per
second of windows, over the same in steady time. A reload can cost after its window too (a new
Node worker's warm-up goes on after `herd upgrade` returns), so what each reload lost is also
counted from its window's beginning until {AFTER_US / 1e6:g} s after its end, against the rate of
the rest of the run after its first {WARMUP_US / 1e6:g} s: "lost per reload", in seconds of the steady rate; a
drift of the machine's rate counts as well, so a fast reload's figure is noise around 0 (the
control's row, at the end, reads that noise with nothing changing). The
throughput target's verdict reads the share with that loss counted: 1 - lost / window. Cells are medians over the repetitions, with
the range in parentheses. A target's verdict is met or missed when every repetition falls on
that side of it, else inconclusive.

Open loop, 2000 new connections/s, {args.reloads} reloads (fewer where the method says):

{open_table}

Closed loop at saturation ({32} connections), {args.saturation_reloads} reloads (fewer where the method says):

{closed_table}

Scaling 4 -> 8 -> 4 at 2000 new connections/s:

{scale_table}

herd's scaling 4 -> 8 -> 4 at saturation ({32} connections):

{saturated_scaling_table(systems, results)}

herd's other changes, with stdlib Python workers (herd only: the peers have no equivalent
to compare; re-exec: `herd reexec`; takeover: a second `herd run --takeover` on the same
control socket, whose workers start on the same listening socket, then the old herd stops;
recycling: `--max-lifetime 2s,jitter=1s`, so every worker is replaced about every 3 s all
through the run, which then has no steady part to compare with; the control: herd serving while
nothing changes, with windows of {control_window(systems)} s cut out all the same, in every repetition: what the
measurement gives when no system does anything):

{changes_table(systems, results, errors)}

![p99 latency over time through the reloads, one line per system](peers.svg)

{failed_runs(errors)}Where herd is not best:

{chr(10).join(not_best(systems, results))}

Targets:

{chr(10).join('- ' + v for v in targets)}
{known}
Cross-check of `herd-loadgen` with `wrk` (`-t2 -c32 --latency`, `Connection: close`), closed
loop with 32 connections, same targets, steady:

{chr(10).join(cross_rows)}
""")

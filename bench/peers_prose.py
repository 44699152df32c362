"""The peer benchmark's fixed explanations: why herd can lose a column, and what is known of
the Python rows' misses (measured by other bench scripts, each named with its date)."""

# Why herd can lose a column, said where it does.
APP_SPEED = ("the steady figures are the app's and its runtime's, not the supervisor's: herd is not in the data "
             "path (its workers accept from the shared socket themselves), and nginx's C event loop answering "
             "`return 200` or uWSGI's C HTTP parser do less work per request than a Python or Node worker")
START_UP = ("a change starts new processes whose start-up (Python imports, Node's boot) competes with the serving "
            "workers for the machine's 2 cores, the load generator's included; a system that replaces one worker "
            "at a time (uWSGI's chain reload), whose workers start in a millisecond (nginx) or are forked from an "
            "arbiter that has already imported the app (gunicorn, uWSGI) disturbs less, and a ratio is also higher "
            "when the steady p99 under it is lower")
CAREFUL = ("herd starts a replacement, waits until it is ready and has stayed ready for `--min-ready` (see the "
           "defaults in the method), and only then stops the worker it replaces, starting `--max-starting` at a time; systems "
           "that start every new worker at once with no readiness check (gunicorn, circus, nginx) finish sooner and check less")
TICKS = "at a 10 ms clock tick, a supervisor's CPU below about 0.5% of a core is noise"
# What is known of a missed verdict of a Python row (bench/upgrade_phases.py --upgrades,
# bench/trickle_cost.py, bench/reload_cost.py, bench/warm_up.py, `perf sched`, 2026-12-01 to
# -03), said once, after the targets, when one misses.
PYTHON_MISS = ("What is known of the Python rows' misses: on this 2-core machine at saturation a reload costs "
               "the serving workers the CPU the start-ups get. A start costs a gunicorn worker 130-140 ms of "
               "CPU, a `--fork-server` generation's load 140 ms once (about 200 ms beside saturated workers) "
               "and 10 ms per forked worker, a stdlib worker 16 ms. A starting worker waits in `SCHED_IDLE`; "
               "starved, it trickles at nice 10 below herd's until it is ready (`warm_up_trickle`), and "
               "`bench/trickle_cost.py` (2026-12-03, the `--fork-server` gunicorn pool at saturation, 6 periods "
               "of 4 s beside a spinning process, each against the quiet periods around it) measured what that "
               "rate costs: beside nothing 103% (97-112%) of quiet, beside `SCHED_IDLE` 96% (it got 3.4% of a "
               "core), beside nice 10 92% (85-100%; 6.4% of a core), beside nice 0 84% (29%). So while a "
               "gunicorn row's start-ups trickle, which is most of its reload at saturation, the pool serves "
               "about 95% of steady whatever the start-up's size: a larger one lasts longer at the same cost "
               "per second. 8 upgrades in a row, each against the 5 s "
               "of steady before and after it (`bench/upgrade_phases.py --saturation --upgrades 8`), gave the `--fork-server` gunicorn row 89-97% (median 94%, 4 "
               "runs), herd's gunicorn row 94% (1 run), and 99% for waits of 5 s with no upgrade; 5 s periods of "
               "steady throughput differ by up to 20% on this host, so one run's share is uncertain by several "
               "points. A lower trickle costs less per second and lengthens reloads at saturation: nice 13 "
               "against nice 10, side by side (2026-12-03, `upgrade_phases.py --saturation --upgrades 6`, "
               "interleaved), gave the `--fork-server` gunicorn row 98% against 96% (median of 18 upgrades "
               "each) for reloads of 9.4 s against 6.6 s, and herd's gunicorn row 95% against 96% (12 each: "
               "no gain, its 4 start-ups run into their 5 s warm-up limit), so it was not kept; "
               "`--starting-nice off` gives 1.8 s reloads "
               "whose cost comes at once (about the same share, and a p99 of 30x steady at 2000/s). Tried and "
               "not kept: old workers at nice 10 while they stop, a blocking socket for the stdlib worker, "
               "`--max-starting 4` (`bench/warm_up.py`).")
# What is known of a missed p99 ratio at 2000/s of a Python row (bench/trickle_cost.py --rate,
# bench/upgrade_phases.py, 2026-12-04), said with PYTHON_MISS.
PYTHON_MISS_2000 = ("At 2000/s, the slow requests of an upgrade are those served while a new worker starts "
                    "or an old one exits (`bench/upgrade_phases.py`, 4 stdlib workers: p99 1.2-2.9 ms "
                    "there, 0.4 ms in the rest of the upgrade), and a reload's p99 follows the CPU its "
                    "start-ups use. A reload of 4 costs about 64 ms of start-up CPU with stdlib workers, "
                    "about 45 with `--fork-server` (a load of about 25 ms, then about 5 ms a worker since "
                    "the fork server compiles the script once, 2026-12-04: 7 ms before), about 520 with "
                    "gunicorn and about 140 with `--fork-server` gunicorn (a load of about 90 ms, "
                    "gunicorn's own imports, then 12-15 ms a worker): the rows over 2x are gunicorn's. "
                    "On this 2-vCPU VM (HZ 250, `PREEMPT_NONE`) a lower priority does not make that CPU "
                    "free: beside a process spinning at `SCHED_IDLE`, 4 stdlib workers at 2000/s had a "
                    "p99 2.7x (0.7x-3.9x) that of the quiet periods around it, and 0.9x beside one at "
                    "nice 10, 1.0x at nice 0 (`bench/trickle_cost.py --rate 2000 --periods 8 "
                    "--seconds 3 py`, 2026-12-04: the scheduler counts a CPU that runs only `SCHED_IDLE` "
                    "work as idle and wakes serving workers there); yet upgrades with `--starting-nice 19` "
                    "or `10` instead gave ratios of 3.2x and 2.2x against 2.0x (`bench/warm_up.py --only "
                    "'herd, stdlib'`, 2 repetitions each), so `SCHED_IDLE` stays: a start-up is not a "
                    "spinner (exec, page faults, file reads). uWSGI's chain reload forks each new worker "
                    "from a master that has the app loaded, one at a time, and nginx's workers start in "
                    "a millisecond.")
SEE_BELOW = " What is known: in its section, after the targets."

"""Unit tests of the peer benchmark's arithmetic: python3 -m unittest discover bench"""
import os
import tempfile
import unittest

from peers import figures
from peers_report import not_best, verdicts
from peers_stats import (SETTLE_US, WARMUP_US, binned_p99, busy_ticks, cut, irq_time_accounted, line_chart, lost,
                         median_range, merged, others_share, percentile, place, read_timeline, spans,
                         tree_ticks)


class Percentiles(unittest.TestCase):
    def test_nearest_rank(self):
        values = list(range(1, 101))
        self.assertEqual(percentile(values, 99), 99)
        self.assertEqual(percentile(values, 50), 50)
        self.assertEqual(percentile([7], 99), 7)
        self.assertIsNone(percentile([], 99))

    def test_median_and_range(self):
        self.assertEqual(median_range([3.0, 1.0, 2.0]), "2.0 (1.0-3.0)")
        self.assertEqual(median_range([2.0, None]), "2.0")
        self.assertEqual(median_range([None]), "-")


class Windows(unittest.TestCase):
    windows = [(1_500_000, 2_500_000)]

    def test_a_request_is_steady_inside_or_left_out(self):
        self.assertIsNone(place(WARMUP_US - 1, self.windows), "warming up")
        self.assertEqual(place(WARMUP_US, self.windows), "steady")
        self.assertLess(WARMUP_US, self.windows[0][0], "the windows below begin after it")
        self.assertEqual(place(1_500_000, self.windows), "reload")
        self.assertEqual(place(2_500_000, self.windows), "reload")
        self.assertIsNone(place(2_500_000 + SETTLE_US, self.windows), "settling")
        self.assertEqual(place(2_500_001 + SETTLE_US, self.windows), "steady")

    def test_spans_leave_out_warm_up_and_settling(self):
        steady, inside = spans(self.windows, 4_000_000)
        self.assertAlmostEqual(inside, 1.0)
        self.assertAlmostEqual(steady, 4.0 - WARMUP_US / 1e6 - 1.0 - SETTLE_US / 1e6)

    def test_cut_compares_reload_windows_with_steady(self):
        # 1000 requests/s for 4 s: 1 ms steady, 10 ms inside the window, where half the
        # requests fail (and count as latency too).
        records = []
        for i in range(4000):
            start = i * 1000
            inside = 1_500_000 <= start <= 2_500_000
            outcome = "reset" if inside and i % 2 else "ok"
            records.append((start, 10_000 if inside else 1_000, outcome))
        got = cut(records, self.windows)
        self.assertEqual(got["failures"], {"reset": 500})
        self.assertEqual(got["failed"], 500)
        self.assertEqual((got["p99_steady_ms"], got["p99_reload_ms"]), (1.0, 10.0))
        self.assertAlmostEqual(got["ratio"], 10.0)
        self.assertAlmostEqual(got["share"], 0.5, places=2)

    def test_a_cost_that_falls_after_the_window_is_lost_all_the_same(self):
        # 1000 requests/s for 10 s, a reload window from 3 s to 4 s at full rate, and then a
        # second at half the rate (a new worker warming up): the window alone reads over 100%
        # (the slow second lowers the steady rate), but the reload lost 0.5 s of the steady
        # rate, half its window.
        records = [(i * 1000, 1_000, "ok") for i in range(10_000)
                   if not (4_000 < i <= 5_000 and i % 2)]
        got = cut(records, [(3_000_000, 4_000_000)])
        self.assertGreater(got["share"], 1.0)
        self.assertAlmostEqual(got["lost_s"], 0.5, delta=0.01)
        self.assertAlmostEqual(got["share_counted"], 0.5, delta=0.01)

    def test_losses_of_reloads_whose_after_times_overlap_count_once(self):
        # Two reloads 1 s apart at 1000 requests/s with nothing lost: their counted spans
        # overlap, and the time they share is counted once, not as a loss.
        records = [(i * 1000, 1_000, "ok") for i in range(10_000)]
        got, counted = lost(records, [(2_000_000, 2_500_000), (3_500_000, 4_000_000)], 9_999_000)
        self.assertAlmostEqual(got, 0.0, delta=0.01)
        self.assertEqual(counted, 2)
        self.assertEqual(merged([(5, 9), (1, 3), (2, 4)]), [(1, 4), (5, 9)])

    def test_without_steady_time_nothing_is_lost(self):
        records = [(i * 1000, 1_000, "ok") for i in range(3_000)]
        self.assertIsNone(lost(records, [(1_000_000, 2_000_000)], 2_999_000))
        self.assertIsNone(lost(records, [], 2_999_000))
        # Less than LEAST_STEADY_US of steady time is no rate to count against.
        records = [(i * 1000, 1_000, "ok") for i in range(4_500)]
        self.assertIsNone(lost(records, [(1_500_000, 2_500_000)], 4_499_000))

    def test_windows_outside_the_run_count_for_nothing(self):
        # A window during the warm-up and one after the run's end are not reloads it counts;
        # one the run's end clips counts what the run holds of it.
        records = [(i * 1000, 1_000, "ok") for i in range(10_000)]
        windows = [(100_000, 200_000), (3_000_000, 3_500_000), (9_500_000, 9_900_000), (20_000_000, 21_000_000)]
        got, counted = lost(records, windows, 9_999_000)
        self.assertAlmostEqual(got, 0.0, delta=0.01)
        self.assertEqual(counted, 2)

    def test_the_run_ends_when_its_last_request_starts(self):
        # 1000 requests/s for 4 s, steady but for 10 requests that time out after 5 s: the
        # load generator waits for them, 9 s in all, but sent for 4 s only. The steady rate
        # is the sending rate, not halved by the wait (PM2's share of steady read 200%).
        records = [(i * 1000, 5_000_000 if i % 400 == 0 else 1_000, "timeout" if i % 400 == 0 else "ok")
                   for i in range(4000)]
        got = figures({"seconds": 9.0}, records, self.windows)
        self.assertAlmostEqual(got["steady_rps"], 990, delta=10)
        self.assertAlmostEqual(got["share"], 1.0, delta=0.01)
        self.assertEqual(got["sent_s"], 3.999)
        self.assertEqual(got["durations"], [1.0])

    def test_without_windows_there_is_no_ratio(self):
        got = cut([(WARMUP_US + 100_000, 500, "ok"), (WARMUP_US + 200_000, 700, "ok")], [])
        self.assertEqual(got["p99_steady_ms"], 0.7)
        self.assertIsNone(got["ratio"])
        self.assertIsNone(got["share"])


class Timeline(unittest.TestCase):
    def test_reads_what_loadgen_writes(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "t.csv")
            with open(path, "w") as f:
                f.write("start_us,latency_us,outcome\n0,412,ok\n1000,5000000,timeout\n")
            self.assertEqual(read_timeline(path), [(0, 412, "ok"), (1000, 5_000_000, "timeout")])
            with open(path, "w") as f:
                f.write("0,412,ok\n")
            with self.assertRaises(ValueError):
                read_timeline(path)

    def test_bins_and_chart(self):
        records = [(i * 1000, 1000 + (i % 100) * 10, "ok") for i in range(1000)]
        bins = binned_p99(records, 250_000)
        self.assertEqual([b[0] for b in bins], [0.0, 0.25, 0.5, 0.75])
        self.assertEqual(bins[0][1], 1.98)
        svg = line_chart([("herd", bins, [(0.25, 0.5)])], "p99")
        self.assertTrue(svg.startswith("<svg") and svg.endswith("</svg>"))
        self.assertIn(">herd</text>", svg)


class OtherWork(unittest.TestCase):
    def test_busy_ticks_count_user_nice_system_interrupts_and_steal(self):
        # user nice system idle iowait irq softirq steal guest guest_nice
        self.assertEqual(busy_ticks("cpu  100 20 30 5000 40 7 9 3 0 0"), 169)
        self.assertEqual(busy_ticks("cpu  100 20 30 5000"), 150)
        self.assertEqual(busy_ticks("cpu  100 20 30 5000 40 7 9 3 0 0", interrupts_in_tasks=False), 153)

    def test_interrupt_time_is_accounted_apart_only_where_the_kernel_says(self):
        self.assertTrue(irq_time_accounted("CONFIG_TICK_CPU_ACCOUNTING=y\nCONFIG_IRQ_TIME_ACCOUNTING=y\n"))
        self.assertFalse(irq_time_accounted("# CONFIG_IRQ_TIME_ACCOUNTING is not set\nCONFIG_HAVE_IRQ_TIME_ACCOUNTING=y"))
        self.assertFalse(irq_time_accounted(""))

    def test_a_tree_is_its_roots_and_all_their_descendants(self):
        procs = {1: (0, 1000), 2: (0, 50), 10: (1, 5), 11: (10, 7), 12: (11, 11), 20: (1, 300),
                 30: (2, 13), 40: (99, 17)}
        self.assertEqual(tree_ticks(procs, {10}), 5 + 7 + 11)
        self.assertEqual(tree_ticks(procs, {10, 2, 20}), 5 + 7 + 11 + 50 + 13 + 300)
        self.assertEqual(tree_ticks(procs, {11, 12}), 7 + 11, "a root inside another counts once")
        self.assertEqual(tree_ticks(procs, {77}), 0, "a root that is gone")

    def test_only_what_others_used_counts(self):
        # 2 cores at 100 ticks/s for 10 s: 2000 ticks. The machine was busy 1900 ticks, the
        # benchmark's own trees used 1700 of them: others took 200, a tenth of the machine.
        self.assertAlmostEqual(others_share((0.0, 5000, 900), (10.0, 6900, 2600), 100, 2), 0.10)
        # A benchmark that saturates the machine on its own is quiet.
        self.assertEqual(others_share((0.0, 0, 0), (10.0, 2000, 2000), 100, 2), 0.0)
        # Counters read a moment apart never make it negative.
        self.assertEqual(others_share((0.0, 0, 0), (10.0, 1990, 2000), 100, 2), 0.0)
        self.assertEqual(others_share((5.0, 0, 0), (5.0, 10, 0), 100, 2), 0.0)


class Verdicts(unittest.TestCase):
    class Herd:
        name, table, by_herd, windowed = "herd, stdlib Python", "peers", True, True

    one_run = {"open": {"failed": 0, "ratio": 1.5}, "closed": {"failed": 0, "share": 0.97, "ratio": 1.2},
           "scale": {"failed": 0}}

    def test_a_busy_machine_leaves_only_0_failed_standing(self):
        quiet = verdicts([self.Herd], {self.Herd.name: [dict(self.one_run, others=0.02)]}, "not run")
        self.assertEqual(sum("**met**" in v for v in quiet), 5)
        busy = verdicts([self.Herd], {self.Herd.name: [dict(self.one_run, others=0.02),
                                                       dict(self.one_run, others=0.3)]}, "not run")
        self.assertEqual([v.startswith("0 failed") for v in busy if "**met**" in v], [True, True])
        self.assertEqual(sum("**inconclusive**" in v for v in busy), 3)
        self.assertIn("not measured: not run.", busy[-1])

    def test_a_ratio_needs_a_steady_baseline(self):
        calm = dict(self.one_run, others=0.0)
        shaken = dict(calm, open=dict(calm["open"], p99_steady_ms=0.3, ratio=0.7))
        lines = verdicts([self.Herd], {self.Herd.name: [dict(calm, open=dict(calm["open"], p99_steady_ms=0.4)),
                                                       dict(calm, open=dict(calm["open"], p99_steady_ms=1.1))]},
                         "not run")
        self.assertIn("at 2000/s at most 2x steady: 1.5x, **met**.", lines[2])
        lines = verdicts([self.Herd], {self.Herd.name: [shaken, dict(shaken, open=dict(shaken["open"],
                                                                                        p99_steady_ms=158.0))]},
                         "not run")
        self.assertIn("0.7x, **inconclusive** (steady p99 0.30-158.00 ms across repetitions).", lines[2])

    def test_repetitions_on_both_sides_of_a_target_decide_nothing(self):
        def run(share, ratio):
            return dict(self.one_run, others=0.0, closed=dict(self.one_run["closed"], share=share, ratio=ratio))
        lines = verdicts([self.Herd], {self.Herd.name: [run(0.91, 1.2), run(0.97, 1.6)]}, "not run")
        self.assertIn("at least 95% of steady: 94.0%, **inconclusive** (its repetitions read 91% to 97%, "
                      "on both sides of the target", lines[3])
        self.assertIn("at most 1.5x steady: 1.4x, **inconclusive** (its repetitions read 1.2x to 1.6x", lines[4])
        lines = verdicts([self.Herd], {self.Herd.name: [run(0.91, 1.6), run(0.94, 1.7)]}, "not run")
        self.assertIn("92.5%, **missed**.", lines[3])
        self.assertIn("1.7x, **missed**.", lines[4])
        lines = verdicts([self.Herd], {self.Herd.name: [run(0.95, 1.5), run(0.99, 1.1)]}, "not run")
        self.assertIn("97.0%, **met**.", lines[3])
        self.assertIn("1.3x, **met**.", lines[4])

    def test_the_scale_targets_count_their_own_run(self):
        figures = {"workers": 4096, "all_ready_s": 1.0, "rss_mib": 8.0, "status_table_ms": 10.0,
                   "status_json_ms": 10.0, "kills": 30, "replace_p50_ms": 5.0, "replace_max_ms": 9.0,
                   "reaped_p50_ms": 1.0, "respawned_p50_ms": 2.0}
        try:
            import scale_targets  # noqa: F401
        except ImportError:
            self.skipTest("bench/scale_targets.py is not here")
        lines = verdicts([], {}, dict(figures, others=0.01))
        self.assertEqual(sum("**met**" in v for v in lines), 4)
        lines = verdicts([], {}, dict(figures, others=0.5))
        self.assertEqual(sum("**inconclusive**" in v for v in lines), 3, "RSS is no timing")

    def test_the_start_target_reads_the_median_of_its_starts(self):
        try:
            from scale_targets import verdict_lines
        except ImportError:
            self.skipTest("bench/scale_targets.py is not here")
        figures = {"workers": 4096, "all_ready_s": 1.41, "starts_s": [2.11, 1.41, 1.38], "rss_mib": 8.0,
                   "status_table_ms": 10.0, "status_json_ms": 10.0, "kills": 30, "replace_p50_ms": 5.0,
                   "replace_max_ms": 9.0, "reaped_p50_ms": 1.0, "respawned_p50_ms": 2.0}
        line = verdict_lines(figures)[0]
        self.assertIn("**met** (1.41 s, median of 3 starts, 1.38-2.11 s", line)


class NotBest(unittest.TestCase):
    class System:
        def __init__(self, name, by_herd):
            self.name, self.by_herd, self.table = name, by_herd, "peers"

    def test_every_column_herd_loses_is_named_with_why(self):
        herd, nginx = self.System("herd, stdlib Python", True), self.System("nginx", False)
        run = {"idle_cpu": 0.0, "open": {"failed": 0, "p99_steady_ms": 0.4, "p99_reload_ms": 0.6, "ratio": 1.5,
                                         "durations": [4.0, 4.2], "rss": 6.0, "load_cpu": 0.2},
               "closed": {"failed": 0, "steady_rps": 20000, "share": 1.0, "durations": [5.0]}}
        theirs = {"idle_cpu": 0.0, "open": {"failed": 0, "p99_steady_ms": 0.3, "p99_reload_ms": 0.9, "ratio": 3.0,
                                            "durations": [0.1], "rss": 6.8, "load_cpu": 0.2},
                  "closed": {"failed": 0, "steady_rps": 25000, "share": 0.98, "durations": [0.1]}}
        lines = not_best([herd, nginx], {herd.name: [run], nginx.name: [theirs]})
        labels = [line.split(":")[0] for line in lines]
        self.assertEqual(labels, ["- p99 steady at 2000/s", "- reload duration", "- steady req/s at saturation",
                                  "- reload duration at saturation"])
        self.assertIn("nginx 0.30 ms, herd's best 0.40 ms (herd, stdlib Python). Why: ", lines[0])
        self.assertIn("herd is best", not_best([herd], {herd.name: [run]})[0])


if __name__ == "__main__":
    unittest.main()

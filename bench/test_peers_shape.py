"""Unit tests of the peer benchmark's run shape: python3 -m unittest discover -s bench"""
import types
import unittest

from peers_report import early_text, fewer_text, spent_text
from peers_shape import enough, fewer_reloads, reload_counts, running_order, stopped_early, time_line, time_spent, top_up


def system(name, most_reloads=(None, None), why="", table="peers"):
    return types.SimpleNamespace(name=name, most_reloads=most_reloads, fewer_why=why, table=table)


class Order(unittest.TestCase):
    def test_repetitions_rotate_and_herd_only_changes_run_once(self):
        a, b, c, reexec = system("a"), system("b"), system("c"), system("reexec", table="changes")
        names = lambda rep: [s.name for s in running_order([a, b, c, reexec], rep)]
        self.assertEqual(names(0), ["a", "b", "c", "reexec"])
        self.assertEqual(names(1), ["b", "c", "a"])
        self.assertEqual(names(2), ["c", "a", "b"])
        self.assertEqual(running_order([reexec], 1), [])

    def test_the_control_runs_in_every_repetition(self):
        a, reexec = system("a"), system("reexec", table="changes")
        control = system("control", table="changes")
        control.every_rep = True
        self.assertEqual([s.name for s in running_order([a, reexec, control], 1)], ["control", "a"])


class Reloads(unittest.TestCase):
    def test_a_cap_only_ever_lowers_the_count(self):
        self.assertEqual(reload_counts((None, None), 10, 5), (10, 5))
        self.assertEqual(reload_counts((4, 2), 10, 5), (4, 2))
        self.assertEqual(reload_counts((4, 2), 2, 1), (2, 1), "--quick asks for fewer than the cap")
        self.assertEqual(reload_counts((None, 3), 10, 5), (10, 3))

    def test_the_report_names_who_gets_fewer_and_why(self):
        everyone = [system("herd"), system("uWSGI, chain reload", (4, 2), "8 s each")]
        self.assertEqual(fewer_reloads(everyone, 10, 5), [("uWSGI, chain reload", 4, 2, "8 s each")])
        self.assertEqual(fewer_reloads(everyone, 2, 1), [])
        args = types.SimpleNamespace(reloads=10, saturation_reloads=5)
        self.assertEqual(fewer_text(everyone, args),
                         "Fewer reloads for uWSGI, chain reload: 4 at 2000/s and 2 at saturation (8 s each). ")
        self.assertEqual(fewer_text(everyone, types.SimpleNamespace(reloads=2, saturation_reloads=1)), "")


class EarlyStop(unittest.TestCase):
    def test_slow_reloads_stop_once_their_windows_hold_enough(self):
        self.assertFalse(enough([3.6, 3.6], 10, "open"), "2 reloads are too few at 2000/s, however long")
        self.assertTrue(enough([3.6, 3.6, 3.6], 10, "open"))
        self.assertFalse(enough([19.0], 5, "closed"))
        self.assertTrue(enough([19.0, 19.0], 5, "closed"))
        self.assertFalse(enough([7.4, 7.4], 5, "closed"), "14.8 s of windows are not 15")

    def test_fast_reloads_run_every_one_asked(self):
        self.assertFalse(enough([0.11] * 9, 10, "open"))
        self.assertTrue(enough([0.11] * 10, 10, "open"))
        self.assertTrue(enough([0.13], 1, "closed"), "--quick asks for 1")

    def test_a_run_stopped_early_gets_the_steady_time_its_missing_gaps_gave(self):
        self.assertAlmostEqual(top_up(2, 5, 1.0), 3 * 0.75)
        self.assertAlmostEqual(top_up(3, 10, 0.3), 7 * 0.05)
        self.assertEqual(top_up(5, 5, 1.0), 0)
        self.assertEqual(top_up(1, 1, 0.2), 0, "a gap shorter than the settling time adds nothing")

    def test_the_report_says_the_rule_and_who_stopped_early(self):
        def run(opens, closes, asked=(10, 5)):
            return {"open": {"durations": [1.0] * opens, "asked": asked[0]},
                    "closed": {"durations": [1.0] * closes, "asked": asked[1]}}
        results = {"herd, gunicorn": [run(3, 2), run(4, 5)], "nginx": [run(10, 5), run(10, 5)],
                   "herd recycles its workers": [run(2, 1, (2, 1))], "herd, Node": [run(10, 2)],
                   "saved before": [{"open": {"durations": [1.0]}}]}
        self.assertEqual(stopped_early(results, "closed"), {"herd, gunicorn": [2, 5], "herd, Node": [2]})
        text = early_text(results)
        self.assertIn("at least 3 reloads' windows hold 10 s in all at 2000/s, or 2 reloads' 15 s at saturation",
                      text)
        self.assertTrue(text.endswith("Stopped early, reloads per repetition: herd, gunicorn 3, 4 at 2000/s and "
                                      "2, 5 at saturation; herd, Node 2 at saturation. "), text)
        self.assertNotIn("Stopped early", early_text({"nginx": [run(10, 5)]}))


class TimeSpent(unittest.TestCase):
    def test_phases_add_up_over_repetitions_longest_system_first(self):
        results = {
            "nginx": [{"phases": {"start": 0.5, "open": 7.0, "stop": 0.1}}],
            "herd": [{"phases": {"start": 1.0, "open": 20.0, "closed": 40.0}},
                     {"phases": {"start": 1.2, "open": 19.0, "closed": 38.0, "stop": 0.4}}],
            "old run": [{"open": {}}],
        }
        spent = time_spent(results)
        self.assertEqual([name for name, _, _ in spent], ["herd", "nginx", "old run"])
        self.assertAlmostEqual(spent[0][1], 119.6)
        self.assertEqual(time_line(spent[0]), "herd 120 s (start 2, open 39, closed 78, stop 0)")
        self.assertEqual(spent[2][1], 0)

    def test_the_report_line_leaves_out_runs_without_timings(self):
        self.assertEqual(spent_text({"old run": [{}]}), "")
        self.assertTrue(spent_text({"nginx": [{"phases": {"open": 7.0, "scale_closed": 2.0}}]}).endswith(
            "(start, idle, each load's run with its steps, stop): nginx 9 s (open 7, scale closed 2)."))


if __name__ == "__main__":
    unittest.main()

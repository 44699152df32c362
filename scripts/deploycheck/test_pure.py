"""Unit tests of the check's pure parts: durations, addresses, quantities, the Dockerfile
parser, .dockerignore matching, unit files."""
import unittest

import dockerfile
import herdconf
import kubefit
import units


class Durations(unittest.TestCase):
    def test_herd_and_systemd_forms(self):
        self.assertEqual(herdconf.seconds("10s", "x"), 10)
        self.assertEqual(herdconf.seconds("1m30s", "x"), 90)
        self.assertEqual(herdconf.seconds("500ms", "x"), 0.5)
        self.assertEqual(herdconf.seconds(35, "x"), 35)
        self.assertEqual(herdconf.seconds("35", "x"), 35)

    def test_nonsense_is_an_error(self):
        for bad in ("", "10 s", "ten", "10sx", "s"):
            with self.assertRaises(ValueError, msg=bad):
                herdconf.seconds(bad, "grace")

    def test_defaults(self):
        self.assertEqual(herdconf.stop_seconds({}), (0, 30))
        self.assertEqual(herdconf.stop_seconds({"drain-delay": "5s", "grace": 7}), (5, 7))


class Addresses(unittest.TestCase):
    def test_ports(self):
        self.assertEqual(herdconf.port(":9100"), 9100)
        self.assertEqual(herdconf.port("0.0.0.0:8080,nodelay"), 8080)
        self.assertEqual(herdconf.port("[::1]:80"), 80)
        self.assertIsNone(herdconf.port("unix:/run/app.sock"))
        self.assertIsNone(herdconf.port("systemd"))

    def test_bind_ports_by_name(self):
        config = {"bind": ["http=:8080,nonblocking", ":9000", "systemd", "unix:/x.sock",
                           "dns=udp://:53", "tcp://127.0.0.1:7000"]}
        self.assertEqual(herdconf.bind_ports(config),
                         {"http": 8080, "tcp-9000": 9000, "tcp-7000": 7000})

    def test_probe_ports(self):
        self.assertEqual(herdconf.probe_ports({"metrics": ":9100", "health": "127.0.0.1:81"}),
                         {9100, 81})


class Quantities(unittest.TestCase):
    def test_quantities(self):
        self.assertEqual(kubefit.quantity("800m"), 0.8)
        self.assertEqual(kubefit.quantity("1"), 1)
        self.assertEqual(kubefit.quantity(0.5), 0.5)
        self.assertIsNone(kubefit.quantity("1Ki"))
        self.assertIsNone(kubefit.quantity(None))


class AutoscalerMetrics(unittest.TestCase):
    def test_what_hpa_and_keda_read(self):
        hpa = {"kind": "HorizontalPodAutoscaler", "spec": {"metrics": [
            {"type": "Pods", "pods": {"metric": {"name": "herd_pool_saturation"}}}]}}
        query = 'sum(avg_over_time(herd_listen_queue_length{app="a",socket="http"}[1m]))'
        keda = {"kind": "ScaledObject", "spec": {"triggers": [
            {"type": "prometheus", "metadata": {"query": query}},
            {"type": "prometheus", "metadata": {"query": "max(herd_workers_ready)"}}]}}
        self.assertEqual(kubefit.autoscaler_metrics([("a", hpa), ("b", keda)]),
                         {"herd_pool_saturation", 'herd_listen_queue_length{socket="http"}',
                          "herd_workers_ready"})


class Dockerfiles(unittest.TestCase):
    TEXT = ("# syntax=docker/dockerfile:1\nFROM rust AS build\nRUN a \\\n"
            "    # a comment inside\n    && b\n\nFROM debian\nCOPY --from=build /x /y\n"
            "ENTRYPOINT [\"/y\"]\n")

    def test_instructions_join_lines_and_skip_comments(self):
        parsed = dockerfile.instructions(self.TEXT)
        self.assertEqual([w for _, w, _ in parsed], ["FROM", "RUN", "FROM", "COPY", "ENTRYPOINT"])
        self.assertEqual(parsed[1], (3, "RUN", "a  && b"))

    def test_stages(self):
        stages = dockerfile.stages(dockerfile.instructions(self.TEXT))
        self.assertEqual([(s["from"], s["name"]) for s in stages],
                         [("rust", "build"), ("debian", None)])

    def test_dockerignore_last_match_wins(self):
        import re
        patterns = [(False, re.compile(r"[^/]*$")), (True, re.compile(r"crates$")),
                    (False, re.compile(r"(?:.*/)?target$"))]
        self.assertTrue(dockerfile.ignored("Cargo.toml", patterns))
        self.assertFalse(dockerfile.ignored("crates/herd/src/lib.rs", patterns))
        self.assertTrue(dockerfile.ignored("crates/herd/target/x", patterns))
        self.assertFalse(dockerfile.ignored("anything", []))


class Units(unittest.TestCase):
    def test_settings(self):
        unit = units.settings("[Service]\n# Type=simple\nType=notify\nExecStart=/a \\\n  b\n")
        self.assertEqual(unit, {"Type": ["notify"], "ExecStart": ["/a    b"]})

    def test_notify_reload_on_old_systemd(self):
        notes = []
        text = "Type=notify-reload\nReloadSignal=SIGHUP\nKillMode=mixed\n"
        self.assertEqual(units.for_this_systemd("a.service", text, 252, notes),
                         "Type=notify\nKillMode=mixed\n")
        self.assertEqual(len(notes), 1)
        self.assertEqual(units.for_this_systemd("a.service", text, 253, []), text)

    def test_fdstore_needs_room_for_every_bind_and_shm(self):
        config = {"fdstore": True, "bind": [":80", ":81"], "shm": ["c=4096"]}
        self.assertEqual(units.fdstore_errors("u", {"FileDescriptorStoreMax": ["3"]}, config, "t"),
                         [])
        self.assertIn("FileDescriptorStoreMax= 0 is below 3,",
                      units.fdstore_errors("u", {}, config, "t")[0])
        self.assertIn("2 is below 3,", units.fdstore_errors(
            "u", {"FileDescriptorStoreMax": ["2"]}, config, "t")[0])
        self.assertEqual(units.fdstore_errors("u", {}, {"bind": [":80"]}, "t"), [])


def run():
    """(passed, failed) of these tests, printed as unittest prints them."""
    suite = unittest.defaultTestLoader.loadTestsFromName(__name__)
    result = unittest.TextTestRunner(verbosity=1).run(suite)
    failed = len(result.failures) + len(result.errors)
    return result.testsRun - failed, failed

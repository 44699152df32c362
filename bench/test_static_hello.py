"""bench/run's static hello: where rustup is missing, cannot add the musl target, or the build
fails, the benchmark goes on with glibc's hello, and a static one left from an earlier build is
removed rather than measured as if it were this code's."""
import importlib.machinery
import importlib.util
import io
import os
import subprocess
import tempfile
import unittest
from contextlib import redirect_stdout
from unittest import mock

import scale_targets


def _bench_run():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "run")
    loader = importlib.machinery.SourceFileLoader("bench_run", path)
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader("bench_run", loader))
    loader.exec_module(module)
    return module


def _done(returncode, stdout="", stderr=""):
    return subprocess.CompletedProcess([], returncode, stdout, stderr)


class StaticHello(unittest.TestCase):
    def setUp(self):
        self.run_module = _bench_run()
        self.dir = tempfile.TemporaryDirectory()
        self.stale = os.path.join(self.dir.name, "hello")
        with open(self.stale, "w") as f:
            f.write("an old static hello")
        os.chmod(self.stale, 0o755)
        patch = mock.patch.object(scale_targets, "HELLO_STATIC", self.stale)
        patch.start()
        self.addCleanup(patch.stop)
        self.addCleanup(self.dir.cleanup)

    def build(self, which, answers):
        """bench/run's build_static_hello with `rustup` at `which` and these answers to its
        commands, in order: (whether it built, what it printed, the commands it ran)."""
        ran = []

        def run(command, check=False, **_):
            ran.append(command[:3])
            done = answers.pop(0)
            if check and done.returncode != 0:
                raise subprocess.CalledProcessError(done.returncode, command)
            return done

        out = io.StringIO()
        with mock.patch("shutil.which", return_value=which), \
                mock.patch("subprocess.run", side_effect=run), redirect_stdout(out):
            built = self.run_module.build_static_hello()
        return built, out.getvalue(), ran

    def test_built_it_keeps_it(self):
        listed = _done(0, "x86_64-unknown-linux-gnu\nx86_64-unknown-linux-musl\n")
        built, said, ran = self.build("/usr/bin/rustup", [listed, _done(0)])
        self.assertTrue(built)
        self.assertEqual(said, "")
        self.assertEqual([c[0] for c in ran], ["rustup", "cargo"], "no target add: it was there")
        self.assertTrue(os.path.exists(self.stale))

    def test_no_rustup_means_glibc_s_hello(self):
        built, said, ran = self.build(None, [])
        self.assertFalse(built)
        self.assertIn("no static hello: no rustup", said)
        self.assertEqual(ran, [])
        self.assertFalse(os.path.exists(self.stale), "an old static hello is not measured")
        self.assertEqual(scale_targets.default_worker(), scale_targets.HELLO)

    def test_a_target_rustup_cannot_add_means_glibc_s_hello(self):
        answers = [_done(0, "x86_64-unknown-linux-gnu\n"),
                   _done(1, stderr="info: downloading\nerror: could not download file\n")]
        built, said, _ = self.build("/usr/bin/rustup", answers)
        self.assertFalse(built)
        self.assertIn("failed: error: could not download file", said)
        self.assertFalse(os.path.exists(self.stale))

    def test_a_failed_build_means_glibc_s_hello_not_a_failed_benchmark(self):
        answers = [_done(0, "x86_64-unknown-linux-musl\n"), _done(101)]
        built, said, _ = self.build("/usr/bin/rustup", answers)
        self.assertFalse(built)
        self.assertIn("failed (exit 101)", said)
        self.assertFalse(os.path.exists(self.stale))


if __name__ == "__main__":
    unittest.main()

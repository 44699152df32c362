"""Tests of the peers' setup (peers-setup.sh) on a cache made here, offline: a whole cache is
left alone, a damaged one is installed again, a cache directory that cannot be made is refused
in one line. The installers (npm, python3 -m venv) are stand-ins that say they were called:
python3 -m unittest discover -s bench"""
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import textwrap
import unittest

SETUP = pathlib.Path(__file__).with_name("peers-setup.sh")
NODE = "24.22.3"
PM2 = "7.0.4"
PINS = {
    "circus": ["circus==0.19.0", "pyzmq==27.3.0", "tornado==6.5.2", "psutil==7.2.2"],
    "python": ["gunicorn==23.0.0"],
}


def fake_venv(directory, pins):
    """A venv holding a package of one module for each NAME==VERSION, with its metadata."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", directory], check=True)
    python = os.path.join(directory, "bin", "python")
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    for pin in pins:
        name, version = pin.split("==")
        module = f"{name}_module.py"
        pathlib.Path(purelib, module).write_text("")
        info = pathlib.Path(purelib, f"{name}-{version}.dist-info")
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        (info / "RECORD").write_text(f"{module},,\n{info.name}/METADATA,,\n{info.name}/RECORD,,\n")
    return purelib


def fake_node(cache, version=NODE):
    """The pinned Node's binary, as npm links it: one that says its version."""
    bin_dir = pathlib.Path(cache, "node", "node_modules", ".bin")
    bin_dir.mkdir(parents=True)
    node = bin_dir / "node"
    node.write_text(f"#!/bin/sh\necho v{version}\n")
    node.chmod(0o755)
    return node


def fake_pm2(cache):
    """PM2's package at the pinned version, needing one module of its own."""
    modules = pathlib.Path(cache, "pm2", "node_modules")
    (modules / "pm2").mkdir(parents=True)
    (modules / "pm2" / "package.json").write_text(f'{{"name": "pm2", "version": "{PM2}"}}\n')
    (modules / "pm2" / "index.js").write_text("require('commander');\n")
    (modules / "commander").mkdir()
    (modules / "commander" / "index.js").write_text("")
    return modules


@unittest.skipUnless(shutil.which("node"), "needs node")
class PeersSetup(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)
        self.cache = os.path.join(self.dir.name, "cache")
        self.node = fake_node(self.cache)
        self.modules = fake_pm2(self.cache)
        self.purelib = {name: fake_venv(os.path.join(self.cache, name), pins)
                        for name, pins in PINS.items()}
        self.calls = os.path.join(self.dir.name, "calls")
        bin_dir = os.path.join(self.dir.name, "bin")
        os.mkdir(bin_dir)
        for tool in ["npm", "python3", "gunicorn", "uwsgi", "nginx"]:
            stub = pathlib.Path(bin_dir, tool)
            stub.write_text(textwrap.dedent(f"""\
                #!/bin/sh
                echo "{tool} $*" >> "{self.calls}"
                exit 1
                """))
            stub.chmod(0o755)
        self.path = f"{bin_dir}:{os.environ['PATH']}"

    def setup(self, cache=None):
        env = dict(os.environ, HERD_BENCH_CACHE=cache or self.cache, PATH=self.path)
        run = subprocess.run(["bash", str(SETUP)], env=env, capture_output=True, text=True,
                             timeout=60)
        calls = pathlib.Path(self.calls).read_text() if os.path.exists(self.calls) else ""
        return run, calls

    def test_a_whole_cache_is_left_alone(self):
        run, calls = self.setup()
        self.assertEqual((run.returncode, run.stdout, run.stderr), (0, f"{self.cache}\n", ""))
        self.assertEqual(calls, "")

    def test_a_venv_with_a_package_file_gone_is_installed_again(self):
        os.remove(os.path.join(self.purelib["python"], "gunicorn_module.py"))
        run, calls = self.setup()
        self.assertIn("installing gunicorn==23.0.0", run.stderr)
        self.assertIn(f"python3 -m venv {self.cache}/python", calls)
        self.assertNotIn("npm", calls, "PM2 is whole")

    @unittest.skipUnless(os.uname().sysname == "Linux" and os.uname().machine in ("x86_64", "aarch64"),
                         "Node is pinned on Linux, x86_64 and aarch64")
    def test_a_node_of_another_version_is_installed_again(self):
        self.node.write_text("#!/bin/sh\necho v20.20.2\n")
        run, calls = self.setup()
        self.assertIn("installing node-linux-", run.stderr)
        self.assertIn(f"@{NODE} into {self.cache}/node", run.stderr)
        self.assertIn(f"npm install --loglevel=error --no-audit --no-fund --prefix {self.cache}/node", calls)

    def test_pm2_with_a_module_it_needs_gone_is_installed_again(self):
        shutil.rmtree(self.modules / "commander")
        run, calls = self.setup()
        self.assertIn(f"installing pm2@{PM2}", run.stderr)
        self.assertIn("npm install", calls)

    def test_an_install_that_fails_ends_with_one_line_saying_what_to_do(self):
        shutil.rmtree(self.modules.parent)
        pathlib.Path(self.modules.parent).write_text("not a directory\n")
        run, calls = self.setup()
        self.assertIn("npm install", calls)
        self.assertEqual(run.returncode, 1)
        last = run.stderr.splitlines()[-1]
        self.assertIn(f"could not install pm2@{PM2} into {self.modules.parent}", last)
        self.assertIn("or remove it", last)

    def test_a_cache_directory_that_cannot_be_made_is_refused_in_one_line(self):
        not_a_directory = os.path.join(self.dir.name, "file")
        pathlib.Path(not_a_directory).write_text("")
        run, _ = self.setup(cache=os.path.join(not_a_directory, "peers"))
        self.assertEqual(run.returncode, 1)
        self.assertEqual(len(run.stderr.splitlines()), 1, run.stderr)
        self.assertIn("cannot create the cache directory", run.stderr)
        self.assertIn("set HERD_BENCH_CACHE", run.stderr)


if __name__ == "__main__":
    unittest.main()

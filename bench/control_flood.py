#!/usr/bin/env python3
"""Clients that ask for `status` and hang up at once, side by side for two herd binaries.

Each round starts `HERD run -w WORKERS -- sleep 1000`, floods its control socket from FLOODERS
processes (connect, send a status request, close, again) for SECONDS, and meanwhile asks
`HERD status` again and again as a user would. It reports herd's CPU during the flood (cores),
the flood's rate, and the user's `herd status` times. Rounds alternate between the binaries.

Usage: bench/control_flood.py BEFORE AFTER [--rounds 3] [--seconds 5] [--flooders 2]
       [--workers 16]. Run it under `flock /tmp/herd-bench.lock`.
"""
import argparse
import multiprocessing
import os
import socket
import statistics
import subprocess
import tempfile
import time

STATUS = b'{"version":1,"command":"status"}\n'


def flood(path, until, count):
    sent = 0
    while time.monotonic() < until:
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(path)
            s.sendall(STATUS)
            sent += 1
        except OSError:
            pass
        finally:
            s.close()
    with count.get_lock():
        count.value += sent


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def status_time(herd, env, failures=None):
    start = time.monotonic()
    done = subprocess.run([herd, "status", "--json"], env=env, capture_output=True)
    took = time.monotonic() - start
    if done.returncode != 0:
        if failures is not None:
            why = done.stderr.decode(errors="replace").strip()[-80:]
            failures[why] = failures.get(why, 0) + 1
        return None
    return took


def one_round(herd, args):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "control.sock")
        env = dict(os.environ, HERD_CONTROL=path)
        proc = subprocess.Popen(
            [herd, "run", "-w", str(args.workers), "-b", "127.0.0.1:0", "--", "sleep", "1000"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while status_time(herd, env) is None:
                if time.monotonic() > deadline:
                    raise SystemExit(f"{herd} did not answer status within 30 s")
                time.sleep(0.1)
            until = time.monotonic() + args.seconds
            count = multiprocessing.Value("l", 0)
            flooders = [multiprocessing.Process(target=flood, args=(path, until, count))
                        for _ in range(args.flooders)]
            cpu0, wall0 = cpu_seconds(proc.pid), time.monotonic()
            for f in flooders:
                f.start()
            times, failed, why = [], 0, {}
            time.sleep(0.5)  # the flood reaches its pace
            while time.monotonic() < until - 0.5:
                took = status_time(herd, env, why)
                if took is None:
                    failed += 1
                else:
                    times.append(took)
            for f in flooders:
                f.join()
            cpu = (cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - wall0)
            return {"cpu": cpu, "rate": count.value / args.seconds, "times": times,
                    "failed": failed, "why": why}
        finally:
            proc.terminate()
            proc.wait(timeout=60)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--flooders", type=int, default=2)
    parser.add_argument("--workers", type=int, default=16)
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}")
    results = {"before": [], "after": []}
    for _ in range(args.rounds):
        for name in ("before", "after"):
            r = one_round(getattr(args, name), args)
            results[name].append(r)
            t = r["times"]
            print(f"{name}: herd CPU {r['cpu']:.2f} cores, flood {r['rate']:.0f}/s, herd status "
                  f"n={len(t)} median {statistics.median(t) * 1000:.0f} ms max {max(t) * 1000:.0f} ms"
                  f", failed {r['failed']} {r['why'] or ''}" if t else f"{name}: no status answered", flush=True)
    print(f"load average at end: {os.getloadavg()}")
    for name, rounds in results.items():
        cpu = statistics.median(r["cpu"] for r in rounds)
        times = [x for r in rounds for x in r["times"]]
        print(f"{name}: median herd CPU {cpu:.2f} cores; herd status median "
              f"{statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms over {len(times)}")


if __name__ == "__main__":
    main()

"""bench/scale_targets.py's reading of herd's log: the start ends at the event that made the
last slot ready, whatever chunks the lines came in, and the events after it are queued."""
import json
import os
import threading
import unittest

import scale_targets


def _line(event, **fields):
    return (json.dumps(dict(fields, timestamp="2026-12-01T00:00:00.000000Z", event=event)) + "\n").encode()


class _Pipe:
    """herd's stderr, as a pipe this test writes into."""

    def __init__(self):
        self.read_fd, self.write_fd = os.pipe()

    def fileno(self):
        return self.read_fd

    def write(self, data):
        os.write(self.write_fd, data)

    def close(self):
        os.close(self.write_fd)


class StartEvents(unittest.TestCase):
    def test_the_start_ends_when_every_slot_is_ready_once(self):
        pipe = _Pipe()
        events = scale_targets._Events(pipe, workers=3)
        lines = [_line("worker_started", slot=s, pid=10 + s) for s in range(3)]
        # Slot 0 is ready twice (its first worker died): 3 `worker_ready` lines are not all.
        lines += [_line("worker_ready", slot=0, pid=10), _line("worker_exited", slot=0, pid=10),
                  _line("worker_started", slot=0, pid=20), _line("worker_ready", slot=0, pid=20),
                  b"a worker's own line\n", _line("worker_ready", slot=1, pid=11)]
        data = b"".join(lines)
        # Lines cut anywhere between two reads.
        pipe.write(data[:17])
        pipe.write(data[17:])
        self.assertFalse(events.start_over.wait(0.05), "slot 2 has not said READY=1")
        pipe.write(_line("worker_ready", slot=2, pid=12) + _line("worker_exited", slot=1, pid=11))
        last, last_start = events.wait_start(5)
        self.assertEqual((last["slot"], last["pid"]), (2, 12))
        self.assertEqual(last_start["pid"], 20, "the last worker_started before it")
        self.assertEqual(events.other, ["a worker's own line"])
        after = events.until(lambda e: True, 5, "the event after the start")
        self.assertEqual((after["event"], after["pid"]), ("worker_exited", 11))
        pipe.close()

    def test_herd_exiting_first_says_what_it_said_last(self):
        pipe = _Pipe()
        events = scale_targets._Events(pipe, workers=2)
        pipe.write(_line("worker_ready", slot=0, pid=10) + b"herd: error: out of processes\n")
        pipe.close()
        with self.assertRaises(SystemExit) as stopped:
            events.wait_start(5)
        self.assertIn("herd: error: out of processes", str(stopped.exception))


if __name__ == "__main__":
    unittest.main()

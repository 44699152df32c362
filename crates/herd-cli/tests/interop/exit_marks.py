"""For the tests that a stopped worker ends without the interpreter's teardown but with its
`atexit` functions: imported, it appends `atexit PID` to the file named by EXIT_MARKS when the
process's atexit functions run (then, with EXIT_MARKS_CHILD set, `child-ignores MASK`: the
signals a program it starts ignores, /proc's SigIgn; then, with EXIT_MARKS_HOLD set, waits for
the file it names and marks `atexit-done PID`), and `teardown PID` when the interpreter's
teardown clears this module (an object of it is finalized then); and it writes `kept PID`,
unflushed, to EXIT_MARKS.kept, a file it keeps open (and, with EXIT_MARKS_FULL_STDOUT set, a
line to stdout, which it points at /dev/full; with EXIT_MARKS_FULL_STDERR, stderr too). As a WSGI app (`exit_marks:app`) it
answers with the pid that served, as wsgi_app.py does."""
import atexit
import os
import time

_fd = os.open(os.environ["EXIT_MARKS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)


def _mark(what, _write=os.write, _getpid=os.getpid, _fd=_fd):
    _write(_fd, f"{what} {_getpid()}\n".encode())


def _atexit():
    """Marks `atexit`; then, with EXIT_MARKS_HOLD set, waits (up to a minute) until the file it
    names exists, so that a test can stop the process again while its atexit functions run."""
    _mark("atexit")
    if os.environ.get("EXIT_MARKS_CHILD"):
        import subprocess

        ignored = subprocess.run(["sh", "-c", "grep ^SigIgn: /proc/self/status"],
                                 capture_output=True, text=True).stdout.split()[-1]
        _mark(f"child-ignores {ignored}")
    hold = os.environ.get("EXIT_MARKS_HOLD")
    deadline = time.monotonic() + 60
    while hold and not os.path.exists(hold) and time.monotonic() < deadline:
        time.sleep(0.01)
    if hold:
        _mark("atexit-done")


class _Teardown:
    def __del__(self, _mark=_mark):
        _mark("teardown")


_sentinel = _Teardown()
atexit.register(_atexit)

# With EXIT_MARKS_FULL_STDOUT set, stdout goes to /dev/full, block-buffered (whatever
# PYTHONUNBUFFERED says), with a line in its buffer: the exit's flush of it fails, and Python's
# exit says so with status 120.
if os.environ.get("EXIT_MARKS_FULL_STDOUT"):
    import sys

    sys.stdout.flush()
    _full = os.open("/dev/full", os.O_WRONLY)
    os.dup2(_full, 1)
    os.close(_full)
    sys.stdout = open(1, "w", buffering=8192, closefd=False)
    sys.stdout.write("lost\n")

# With EXIT_MARKS_FULL_STDERR set too, stderr goes to /dev/full as well: the exit cannot even
# say why, and must not let that failure cut it short.
if os.environ.get("EXIT_MARKS_FULL_STDERR"):
    _full = os.open("/dev/full", os.O_WRONLY)
    os.dup2(_full, 2)
    os.close(_full)

# A file the process keeps open, written to without a flush: `kept PID` reaches the file
# EXIT_MARKS.kept only if the exit flushes it.
kept = open(os.environ["EXIT_MARKS"] + ".kept", "a")
kept.write(f"kept {os.getpid()}\n")


def app(environ, start_response):
    body = f"gunicorn pid {os.getpid()}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]

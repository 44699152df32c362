"""For the tests that a stopped worker ends without the interpreter's teardown but with its
`atexit` functions: imported, it appends `atexit PID` to the file named by EXIT_MARKS when the
process's atexit functions run, and `teardown PID` when the interpreter's teardown clears this
module (an object of it is finalized then). As a WSGI app (`exit_marks:app`) it answers with
the pid that served, as wsgi_app.py does."""
import atexit
import os

_fd = os.open(os.environ["EXIT_MARKS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)


def _mark(what, _write=os.write, _getpid=os.getpid, _fd=_fd):
    _write(_fd, f"{what} {_getpid()}\n".encode())


class _Teardown:
    def __del__(self, _mark=_mark):
        _mark("teardown")


_sentinel = _Teardown()
atexit.register(_mark, "atexit")


def app(environ, start_response):
    body = f"gunicorn pid {os.getpid()}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]

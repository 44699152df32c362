#!/usr/bin/env python3
"""hello.py: the classic prefork demo, done right, for herd.

A single-threaded HTTP worker that takes its listening socket from systemd-style socket
activation (LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID), tells the supervisor it is ready
(READY=1 on NOTIFY_SOCKET), waits for clients on the socket it shares with its siblings, and
answers every request with its pid and herd worker slot. Start four of them sharing one port:

    herd run -w 4 -b http=127.0.0.1:8080,nonblocking -- python3 examples/hello.py
    curl http://127.0.0.1:8080/

On SIGTERM an idle worker exits at once and a busy one first finishes its request. The stop
handler may only end the process while nothing has been taken from the shared queue:

- with a socket herd made non-blocking (`-b http=127.0.0.1:8080,nonblocking`), the worker
  waits in select() and calls accept() only when it chose to, so a stop never loses a
  connection: use this for zero-downtime upgrades;
- with a blocking socket (the default, the classic model), it blocks in accept(); a stop that
  lands in the instant between accept() returning and the next Python instruction can reset
  that one connection (measured: 6 resets in 26 recycles, one a second, under a client that
  never pauses).

Standard library only.
"""

import atexit
import errno
import gc
import io
import os
import select
import signal
import socket
import stat
import sys

LISTEN_FDS_START = 3


def listen_sockets():
    """Returns {name: socket} for the inherited sockets, as sd_listen_fds_with_names(3) does
    (an inherited fd that is not a socket, such as shared memory, is given as its number).

    The fds are meant for this process only if LISTEN_PID is our own pid (a wrapper that forked
    after setting it would be wrong). The variables are removed afterwards so that programs we
    might start do not mistake the fds for theirs.
    """
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return {}
    count = int(os.environ.get("LISTEN_FDS", "0"))
    names = os.environ.get("LISTEN_FDNAMES", ":".join(["unknown"] * count)).split(":")
    if len(names) != count:
        raise SystemExit(f"hello.py: LISTEN_FDNAMES has {len(names)} names for {count} fds")
    for var in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(var, None)
    sockets = {}
    for i, name in enumerate(names):
        fd = LISTEN_FDS_START + i
        try:
            os.set_inheritable(fd, False)
            mode = os.fstat(fd).st_mode
        except OSError as e:
            sys.exit(f"hello.py: LISTEN_FDS={count} says fd {fd} ({name}) was passed, "
                     f"but it cannot be used: {e.strerror}")
        if stat.S_ISSOCK(mode):
            sockets.setdefault(name, socket.socket(fileno=fd))
        else:
            sockets.setdefault(name, fd)  # not a socket: shared memory (herd run --shm), as an fd
    return sockets


def is_listening_stream(sock):
    """True if `sock` is a stream socket that listens (one accept() can serve), as
    sd_is_socket(3) checks with SO_TYPE and SO_ACCEPTCONN."""
    try:
        return (sock.type == socket.SOCK_STREAM
                and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) != 0)
    except OSError:
        return False


def pick_listener(sockets):
    """The socket to serve: the one named `http` if it is a listening stream socket, else the
    first one that is. Exits with one line saying what was expected if there is none."""
    candidates = [sockets.get("http")] + list(sockets.values())
    for s in candidates:
        if isinstance(s, socket.socket) and is_listening_stream(s):
            return s
    got = ", ".join(f"{name} ({describe(s)})" for name, s in sockets.items())
    sys.exit(f"hello.py: expected a listening TCP or Unix stream socket, got {got}; "
             "bind one: herd run -b http=127.0.0.1:8080 -- python3 examples/hello.py")


def describe(s):
    """A few words on an inherited fd, for the error message."""
    if not isinstance(s, socket.socket):
        return f"fd {s}, not a socket"
    if s.type == socket.SOCK_DGRAM:
        return f"fd {s.fileno()}, a datagram socket"
    if s.type != socket.SOCK_STREAM:
        return f"fd {s.fileno()}, a socket of type {int(s.type)}"
    return f"fd {s.fileno()}, a stream socket that does not listen"


def notify(message):
    """Sends an sd_notify(3) message (e.g. "READY=1") if the supervisor asked for them."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(message.encode(), path)


def read_request(conn):
    """Reads the request head (up to 64 KiB); returns the request line."""
    conn.settimeout(10)  # on the accepted connection only, never on the shared listener
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 65536:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n", 1)[0].decode("latin-1")


def serve(listener, respond, ready=False):
    """Accepts connections on `listener` and calls respond(conn, request_line) for each, until
    SIGTERM or SIGINT, then ends the process. The handler exits only while the worker waits for
    a client. With `ready`, says READY=1 once the handlers are in place: a stop that came
    earlier would end the worker without them (no atexit functions, no flush)."""
    nonblocking = not os.get_blocking(listener.fileno())
    state = {"waiting": False, "stopping": False}

    def on_stop(signum, frame):
        state["stopping"] = True
        if state["waiting"]:
            exit_now()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    if ready:
        notify("READY=1")
    while not state["stopping"]:
        state["waiting"] = True
        if state["stopping"]:
            break
        try:
            if nonblocking:
                select.select([listener], [], [])
                state["waiting"] = False  # from here on, a stop waits for this turn to end
            conn, _ = listener.accept()
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.ECONNABORTED):
                continue  # a sibling took it, or the client gave up
            raise
        finally:
            state["waiting"] = False
        try:
            respond(conn, read_request(conn))
        except OSError:
            pass  # a client that went away never stops the worker
        finally:
            conn.close()
    exit_now()


def exit_now():
    """Ends the worker once it has stopped serving: its `atexit` functions run and every open
    file flushed, but without the interpreter's teardown (freeing every object), which would
    only take CPU from the workers still serving while herd replaces this one (about 5 ms
    against 1 ms for the peer benchmark's app). Other finalizers do not run (`__del__`, a
    `NamedTemporaryFile` left undeleted): close such things in an `atexit` function. With
    another thread running, the usual exit, which waits for it."""
    threading = sys.modules.get("threading")  # not imported here: every start would pay for it
    if threading and threading.active_count() > 1:
        sys.exit(0)
    # A second stop must not run them twice. A handler that does nothing, not SIG_IGN, which a
    # program an atexit function starts would inherit: it could not be stopped.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda signum, frame: None)
    atexit._run_exitfuncs()
    os._exit(flush_open_files())


def flush_open_files():
    """Flushes every file object still open, text ones before the binary ones under them, as the
    interpreter's teardown does when it frees them: what the app wrote to a file it keeps open
    (its output included) is not lost. Finding them takes a look at every object the process
    holds: about a millisecond here, half a second with five million objects. Returns the status
    Python's own exit gives: 120 if sys.stdout or sys.stderr could not be flushed, else 0."""
    status = 0
    for name in ("stdout", "stderr"):  # first, as Python's exit does: its status says if they failed
        f = getattr(sys, name, None)
        try:
            if f is not None and not f.closed:
                f.flush()
        except Exception as e:
            status = 120
            if name == "stdout":
                why = f"Exception ignored while flushing sys.stdout: {e!r}\n"
                try:
                    os.write(2, why.encode())
                except OSError:  # stderr fails too: the status still says so
                    pass
    kinds = (io.TextIOWrapper, io.BufferedWriter, io.BufferedRandom)
    files = [o for o in gc.get_objects() if isinstance(o, kinds)]
    files.sort(key=lambda f: not isinstance(f, io.TextIOWrapper))
    for f in files:
        try:
            if not f.closed:
                f.flush()
        except Exception:  # a closed, broken or detached file loses nothing more by exiting
            pass
    return status


def main():
    sockets = listen_sockets()
    if not sockets:
        sys.exit("hello.py: no sockets inherited; run me under herd: "
                 "herd run -b http=127.0.0.1:8080 -- python3 examples/hello.py")
    listener = pick_listener(sockets)
    slot = os.environ.get("HERD_WORKER", "-")
    # HELLO_MESSAGE (e.g. from a config file's [env]) is added to the answer.
    message = os.environ.get("HELLO_MESSAGE")
    extra = f", {message}" if message else ""
    body = f"hello from pid {os.getpid()}, worker {slot}{extra}\n".encode()
    response = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body)

    def respond(conn, request_line):
        conn.sendall(response)

    serve(listener, respond, ready=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Fake control servers, for tests. Each prints "ready" (and what it serves) once it listens.

    fake_herd.py PATH...
        A decoy, as another local user could run one: listens on every path given and answers
        every request with success.
    fake_herd.py --silent-stop PATH
        An old herd to take over from: serves one TCP socket "http" (bound to 127.0.0.1:0,
        printed as "ready ADDRESS"), answers `status` (grace_ms 0) and `sockets` (with the fd)
        as a herd does, and never answers `stop`: it holds the connection open, as a herd that
        hangs would.
    fake_herd.py --silent-stop PATH FILE LINE
        The same, appending LINE to FILE as it is asked for its sockets: a config file edited
        while the new herd takes over.
    fake_herd.py --endless PATH / --huge PATH
        A peer whose answer to anything is an endless line (no newline, until the client goes
        away), or one line of 64 MiB.
    fake_herd.py --long-refusal PATH / --hostile-code PATH
        A peer that refuses anything `busy` with a message of 2 MiB, or with an error code
        that holds a line end and a terminal escape.
    fake_herd.py --array-result PATH
        A peer whose answer to anything is a success with an array for its result.
    fake_herd.py --ok-twice PATH
        A peer whose answer to anything names `ok` twice (false, then true) around a result.
    fake_herd.py --arrays PATH
        A peer that answers each command with a success whose result is the array that a
        reader taking a struct from an array member by member would read as that command's
        result (`scale`: [previous, workers], `status`: every member a status must have...);
        to `logs`, one line to follow (an object), then that line as such an array.
    fake_herd.py --no-lines PATH FILE
        A herd whose workers wrote nothing: answers `logs` with no line (a follower's
        connection is held open until it leaves), refuses anything else `busy`, and appends
        the name of each command it is sent to FILE, one a line.
"""

import json
import os
import selectors
import socket
import sys
import threading

OK = b'{"version":1,"ok":true,"result":{"generation":2,"signalled":9,"stopped":true}}\n'


def listen(path):
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    return listener


def decoy(paths):
    selector = selectors.DefaultSelector()
    for path in paths:
        listener = listen(path)
        os.chmod(path, 0o666)
        selector.register(listener, selectors.EVENT_READ)
    print("ready", flush=True)
    while True:
        for key, _ in selector.select():
            conn, _ = key.fileobj.accept()
            with conn:
                conn.settimeout(5)
                try:
                    conn.recv(65536)
                    conn.sendall(OK)
                except OSError:
                    pass


def status(address):
    return {
        "pid": os.getpid(), "name": "fake", "version": "0.0.0", "uptime_ms": 1,
        "generation": 1, "upgrading_to": None, "stopping": False, "desired": 0,
        "running": 0, "ready": 0, "available": 0, "min_ready_ms": 0, "grace_ms": 0,
        "workers": [], "waiting": [], "attached": [],
        "sockets": [{"name": "http", "address": address, "kind": "tcp", "fd": 3,
                     "queue": None, "queue_limit": None}],
    }


def silent_stop(path, edit=None):
    http = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    http.bind(("127.0.0.1", 0))
    http.listen(128)
    address = "%s:%d" % http.getsockname()
    listener = listen(path)
    print("ready " + address, flush=True)
    held = []  # the connections of the stops never answered
    while True:
        conn, _ = listener.accept()
        conn.settimeout(5)
        try:
            command = json.loads(conn.makefile("rb").readline()).get("command")
            if command == "stop":
                held.append(conn)
                continue
            if command == "sockets":
                if edit is not None:
                    with open(edit[0], "a") as f:
                        f.write(edit[1] + "\n")
                socket_info = {"name": "http", "kind": "tcp", "family": "inet",
                               "type": "stream", "address": address}
                answer = {"version": 1, "ok": True, "result": {"sockets": [socket_info]}}
                line = json.dumps(answer).encode() + b"\n"
                socket.send_fds(conn, [line], [http.fileno()])
            else:
                answer = {"version": 1, "ok": True, "result": status(address)}
                conn.sendall(json.dumps(answer).encode() + b"\n")
        except (OSError, ValueError):
            pass
        conn.close()


def flood(path, endless):
    listener = listen(path)
    print("ready", flush=True)
    chunk = b"x" * 65536
    while True:
        conn, _ = listener.accept()
        try:
            conn.recv(65536)
            sent = 0
            while endless or sent < 64 << 20:
                conn.sendall(chunk)
                sent += len(chunk)
            conn.sendall(b"\n")
        except OSError:
            pass
        conn.close()


def refuse(path, error):
    answer(path, json.dumps({"version": 1, "ok": False, "error": error}).encode() + b"\n")


def answer(path, line):
    listener = listen(path)
    print("ready", flush=True)
    while True:
        conn, _ = listener.accept()
        try:
            conn.recv(65536)
            conn.sendall(line)
        except OSError:
            pass
        conn.close()


def arrays(path):
    # Each result's members in the order of the client's struct, as an array.
    status = [os.getpid(), "fake", "0.0.0", 1, 1, None, False, None, 0, 0, 0, 0, 0, 0,
              [], [], [], []]
    results = {"scale": [1, 3], "upgrade": [2], "stop": [True], "signal": [9],
               "reexec": [os.getpid(), "0.0.0"], "sockets": [[]],
               "status": status}
    listener = listen(path)
    print("ready", flush=True)
    while True:
        conn, _ = listener.accept()
        conn.settimeout(5)
        try:
            command = json.loads(conn.makefile("rb").readline()).get("command")
            answer = {"version": 1, "ok": True, "result": results.get(command, [])}
            if command == "logs":
                answer["result"] = {"lines": 1}
                line = ["2026-01-01T00:00:00.000Z", 0, 1, 1, "stdout", "from an array"]
                answer = [answer, [1, line, None]]
            else:
                answer = [answer]
            conn.sendall(b"".join(json.dumps(a).encode() + b"\n" for a in answer))
        except (OSError, ValueError):
            pass
        conn.close()


def no_lines(path, file):
    def serve(conn):
        with conn:
            try:
                request = json.loads(conn.makefile("rb").readline())
                command = request.get("command")
                with open(file, "a") as f:
                    f.write(f"{command}\n")
                if command == "logs":
                    conn.sendall(b'{"version":1,"ok":true,"result":{"lines":0}}\n')
                    if request.get("follow"):
                        conn.recv(1)  # until the follower leaves
                else:
                    error = {"code": "busy", "message": "busy"}
                    conn.sendall(json.dumps({"version": 1, "ok": False, "error": error})
                                 .encode() + b"\n")
            except (OSError, ValueError):
                pass

    listener = listen(path)
    print("ready", flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "--silent-stop":
        silent_stop(sys.argv[2], sys.argv[3:5] if len(sys.argv) > 4 else None)
    elif mode in ("--endless", "--huge"):
        flood(sys.argv[2], mode == "--endless")
    elif mode == "--long-refusal":
        refuse(sys.argv[2], {"code": "busy", "message": "x" * (2 << 20)})
    elif mode == "--array-result":
        answer(sys.argv[2], b'{"version":1,"ok":true,"result":[1,2,3]}\n')
    elif mode == "--ok-twice":
        answer(sys.argv[2], b'{"version":1,"ok":false,"ok":true,"result":{"stopped":true}}\n')
    elif mode == "--arrays":
        arrays(sys.argv[2])
    elif mode == "--no-lines":
        no_lines(sys.argv[2], sys.argv[3])
    elif mode == "--hostile-code":
        refuse(sys.argv[2], {"code": "busy\n\x1b[2J", "message": ""})
    else:
        decoy(sys.argv[1:])


if __name__ == "__main__":
    main()

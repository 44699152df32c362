"""A minimal client of herd's control protocol (docs/control-protocol.md) for the benchmarks:
one JSON line out, one JSON line back, and any fds that travel with it (SCM_RIGHTS)."""
import json
import socket


def request(control, message, fds=False):
    """Sends `message` (without "version") to the control socket at `control`; returns
    (result, received fds). Exits with herd's error when the reply is not ok."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(control)
        s.sendall((json.dumps({"version": 1, **message}) + "\n").encode())
        data, got = b"", []
        while not data.endswith(b"\n"):
            if fds:
                chunk, more, _, _ = socket.recv_fds(s, 65536, 16)
            else:
                chunk, more = s.recv(65536), []
            if not chunk:
                break
            data += chunk
            got += more
    reply = json.loads(data)
    if not reply.get("ok"):
        raise SystemExit(f"herd said: {reply}")
    return reply["result"], got


def status(control):
    """herd's `status` result."""
    return request(control, {"command": "status"})[0]

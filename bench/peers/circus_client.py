"""circusctl's reload, incr and decr from one long-lived client (circus's own CircusClient), so
that a reload window starts when circusd gets the command, not when a new circusctl process
has finished importing. Reads `reload NAME`, `incr NAME N`, `decr NAME N` lines; answers each
with `ok` or `error: ...`. Runs in circus's virtualenv: circus_client.py ENDPOINT"""
import sys

from circus.client import CircusClient


def message(line):
    command, name, *more = line.split()
    if command == "reload":  # as `circusctl reload NAME`: graceful, new processes first
        return {"command": "reload", "properties": {"name": name, "graceful": True, "sequential": False}}
    return {"command": command, "properties": {"name": name, "nb": int(more[0]) if more else 1}}


def main():
    client = CircusClient(endpoint=sys.argv[1], timeout=60)
    for line in sys.stdin:
        reply = client.call(message(line))
        print("ok" if reply.get("status") == "ok" else f"error: {reply}", flush=True)


if __name__ == "__main__":
    main()

"""Debian's HAProxy in front of the fleet (bench/fleet.py): its configuration, and what its
stats socket says about each server.

The configuration is what docs/fleet.md explains: HTTP health checks of herd's `/readyz` on
its `--health` port, short check intervals, retries with a redispatch to another host on every
retry, and timeouts on every phase. Two frontends share the hosts:

- `web` (port 8080, backend `hosts`): HAProxy's default `retry-on conn-failure`, safe for any
  request: a connection refused or timed out is tried again elsewhere, but a request a host
  took and never answered (it died) fails with a 502;
- `web_retry` (port 8081, backend `hosts_retry`): also `retry-on empty-response` for GET and
  HEAD only, for applications whose GETs may safely run twice.
"""
import socket

FRONTENDS = {"hosts": 8080, "hosts_retry": 8081}

CONFIG = """global
    maxconn 4000
    log stdout format raw local0 info
    stats socket {dir}/haproxy.sock mode 600 level admin

defaults
    mode http
    log global
    option httplog
    option dontlog-normal
    maxconn 3000
    timeout connect 1s
    timeout client 10s
    timeout server 10s
    timeout http-request 5s
    timeout queue 5s
    timeout check 1s
    retries 3
    option redispatch 1

frontend web
    bind {lb}:8080
    default_backend hosts

frontend web_retry
    bind {lb}:8081
    default_backend hosts_retry

backend hosts
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server check inter {inter} fastinter {fastinter} downinter {inter} rise 2 fall 2 port {health_port}
{servers}
backend hosts_retry
    balance roundrobin
    retry-on conn-failure empty-response
    http-request disable-l7-retry unless METH_GET
    option httpchk GET /readyz
    http-check expect status 200
    default-server check inter {inter} fastinter {fastinter} downinter {inter} rise 2 fall 2 port {health_port}
{servers}"""


def config(directory, lb, hosts, port, health_port, inter_ms):
    """The configuration text: `hosts` is [(name, address)], each serving on `port` with
    herd's health endpoint on `health_port`; checks every `inter_ms` milliseconds."""
    servers = "".join(f"    server {name} {address}:{port}\n" for name, address in hosts)
    return CONFIG.format(dir=directory, lb=lb, servers=servers, health_port=health_port,
                         inter=f"{inter_ms}ms", fastinter=f"{max(inter_ms // 2, 50)}ms")


def stats(path):
    """`show stat` on the stats socket at `path`: {(proxy, server): {column: value}}."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(path)
        s.sendall(b"show stat\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    lines = data.decode().splitlines()
    if not lines or not lines[0].startswith("# "):
        raise OSError(f"HAProxy's stats socket said {data[:200]!r}")
    columns = lines[0][2:].split(",")
    rows = {}
    for line in lines[1:]:
        if line.strip():
            row = dict(zip(columns, line.split(",")))
            rows[(row["pxname"], row["svname"])] = row
    return rows


def number(row, column):
    """A counter of a stats row (empty means 0)."""
    return int(row.get(column) or 0)

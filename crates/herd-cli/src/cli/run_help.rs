//! `herd run --help`'s reference after the options: addresses, what workers get, the
//! config file, signals and exit codes.

/// The text after `herd run --help`'s options.
pub(super) const RUN_HELP: &str = "\
Addresses (--bind):
  HOST:PORT          TCP on one address; HOST may be a name (the first address it resolves to)
  :PORT              TCP on every interface, IPv6 and IPv4 (dual-stack) where the system allows
  [V6ADDR]:PORT      TCP on an IPv6 address; link-local needs its interface: [fe80::1%eth0]:PORT
  tcp://HOST:PORT    TCP, explicitly
  udp://HOST:PORT    UDP (also udp://:PORT)
  unix:PATH          Unix stream socket file; a stale file is replaced, a live one is an error,
                     any other file is never touched; herd removes the files it created on exit
  unix:@NAME         Unix socket in Linux's abstract namespace
  systemd            every socket systemd passed to herd (socket activation), by its name
  fd:NAME            the socket systemd passed to herd under NAME
  Port 0 picks a free port; the real one is logged. NAME= names the socket for LISTEN_FDNAMES and
  {fd:NAME} (letters, digits, '.', '_', '-'); the default is derived from the address:
  tcp-8080, udp-53, unix-app.sock.

Options (after the address, comma-separated):
  backlog=N     accept-queue length (default: net.core.somaxconn)
  v6only        IPv6 only, no IPv4-mapped connections
  nodelay       TCP_NODELAY, inherited by accepted connections
  nonblocking   O_NONBLOCK on the shared socket, for async workers: the flag lives on the open
                file description that every worker shares, so all of them see the same mode
  mode=OCTAL    permissions of a Unix socket file, e.g. mode=660
  stdin         the socket is also the worker's fd 0, for programs that take it from standard
                input (inetd's convention: Java's System.inheritedChannel(), FastCGI programs);
                at most one socket

What each worker gets:
  the sockets at fds 3, 4, ... in --bind order; LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID (its own
  pid), as systemd's socket activation does; HERD_WORKER, its slot 0..N-1 (stable across
  restarts); HERD_GENERATION, 1 at start and one more with each upgrade; HERD_STOP_SIGNAL, the
  --stop-signal's name; /dev/null as stdin (or the socket bound with 'stdin'), herd's stdout and
  stderr; no other fds; default signal dispositions and an empty signal mask; a process group of
  its own. Workers are killed if herd itself dies. With --compat einhorn also EINHORN_FD_COUNT,
  EINHORN_FD_0..n, EINHORN_FDS, EINHORN_MASTER_PID and EINHORN_SOCK_PATH (whose worker:ack counts
  as READY=1); with --compat server-starter, SERVER_STARTER_PORT (HOST:PORT=FD;...).

Templates in COMMAND and ARGS:
  {fd:NAME}   the fd number of socket NAME        {worker}   the worker's slot
  {{ and }}   literal braces                      {generation}   the worker's generation
  During an upgrade the old and the new worker of a slot run at once: a file each worker owns
  (a pid file, say) needs both, e.g. /run/app-{worker}-{generation}.pid.

Supervision:
  A worker that exits is restarted in its slot: at once after a healthy run (10s or more), with
  exponential backoff (100ms doubling up to 30s) when it keeps failing. A command that cannot be
  executed makes herd fail at once. What an exited worker leaves in its process group gets
  --stop-signal, then SIGKILL after --grace; a stop waits for it.

Recycling (--max-memory, --max-lifetime):
  Like one upgrade step: the old worker is stopped once its successor is ready (and --min-ready
  later); within --max-surge and --max-starting, as upgrades; none while an upgrade runs or
  herd drains (--drain-delay), nor for --max-lifetime while a slot has no ready worker
  (--max-memory does not wait for it).
  A worker over --max-memory from the start, as its predecessor was, waits 30s (doubling up to
  30m) before it is recycled, so that a limit set too low cannot loop. A worker may ask to be
  recycled itself (HERD_RECYCLE=1 on NOTIFY_SOCKET: after N requests, say), as --max-lifetime.

Readiness and the control socket:
  Workers get NOTIFY_SOCKET (sd_notify: READY=1, STATUS=..., WATCHDOG=1, STOPPING=1) and
  HERD_CONTROL. `herd status`, `scale`, `upgrade`, `stop` and `signal` talk to the control socket,
  selected by --name or --control. A rolling upgrade starts new workers (--max-starting at a
  time); each must be ready, and still ready --min-ready later, before the worker it replaces is
  told to stop. A replacement counts against --max-surge until its old worker has exited, so at
  most -w plus --max-surge workers run. A new worker that exits or is not ready in time aborts
  the upgrade, and the old workers keep serving.

Signals to herd:
  TERM, INT   stop gracefully: workers get --stop-signal, then SIGKILL after --grace
  INT again   stop at once (SIGKILL)
  QUIT        stop at once (SIGKILL)
  HUP         rolling upgrade
  TTIN, TTOU  one more, one fewer worker (never below 1)
  USR2        re-execute herd's own binary in place (same pid, same workers and sockets)
  USR1        ignored (logged): `herd signal USR1` passes it to the workers

Handing sockets over:
  `herd attach -- CMD` runs one more worker by hand on the sockets; `herd run --takeover PATH`
  starts a new herd on the sockets of the one at PATH and stops it once its own workers are
  ready; `herd reexec` replaces herd's binary in place. See docs/control-protocol.md.

Config file (--config FILE):
  TOML: keys are the long options (workers = 4, bind = [\"http=:8080\"], grace = \"30s\",
  clear-env = true), command = [\"python3\", \"app.py\"] and an [env] table; see examples/herd.toml.
  Options on the command line override the file's (a repeatable one replaces its list), --env
  adds to [env], --rlimit and --nofile replace the file's setting of the same limit only, and
  COMMAND after -- replaces command. `herd check --config FILE` checks a file
  without starting anything; `herd upgrade --reload-config` reads it again for a new generation.

Exit status:
  0 stopped as asked; 1 a runtime failure (a socket or a worker could not be set up);
  2 invalid arguments.

Examples:
  herd run -w 4 -b http=127.0.0.1:8080 --ready notify -- python3 examples/hello.py
  herd run -b http=:8000,nonblocking -- uvicorn --fd {fd:http} app:app";

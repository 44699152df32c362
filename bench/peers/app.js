// The peer benchmark's Node app, for PM2 (cluster mode: it listens on $PORT and PM2's master
// shares the port) and for herd (the socket arrives at fd 3, LISTEN_FDS; readiness goes to
// herd with systemd-notify, which herd accepts from a worker's children, before it serves). It tells PM2 it is
// ready (process.send("ready"), for `wait_ready`) once it listens; SIGINT (PM2) or SIGTERM
// (herd) closes the listener and exits when the open connections are done.
const http = require("http");
const { execFileSync } = require("child_process");

const server = http.createServer((req, res) => {
  res.setHeader("Connection", "close");
  res.end(`node pid ${process.pid}\n`);
});
const underHerd = process.env.LISTEN_PID === String(process.pid);
const where = underHerd ? { fd: 3 } : { port: Number(process.env.PORT), host: "127.0.0.1" };
// Under herd, READY=1 goes out before the server takes its first connection: herd's socket
// already listens (connections queue meanwhile), and the worker then serves at herd's priority
// from its first request (a starting worker runs at nice 19 until READY=1, and systemd-notify,
// a process of its own, takes a while to start at that priority).
if (underHerd && process.env.NOTIFY_SOCKET) execFileSync("systemd-notify", ["--ready"]);
server.listen(where, () => {
  if (process.send) process.send("ready");
});
const stop = () => server.close(() => process.exit(0));
process.on("SIGINT", stop);
process.on("SIGTERM", stop);

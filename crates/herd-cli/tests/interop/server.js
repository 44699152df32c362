// Node.js under herd: the socket arrives at fd 3 (LISTEN_FDS).
const http = require("http");
if (process.env.LISTEN_PID !== String(process.pid)) {
  console.error("server.js: no socket for this process");
  process.exit(1);
}
const server = http.createServer((req, res) => {
  res.setHeader("Connection", "close");
  res.end(`node pid ${process.pid}\n`);
});
server.listen({ fd: 3 });
process.on("SIGTERM", () => server.close(() => process.exit(0)));

// Bun under herd with node:net: the socket at fd 3 (LISTEN_FDS). A minimal HTTP/1.0 answer
// per connection (node:http in Bun ignores `fd`; see docs/interop.md).
const net = require("node:net");
if (process.env.LISTEN_PID !== String(process.pid)) {
  console.error("bun_net.js: no socket for this process");
  process.exit(1);
}
const server = net.createServer((conn) => {
  let head = "";
  conn.on("data", (chunk) => {
    head += chunk;
    if (head.includes("\r\n\r\n")) {
      const body = `bun pid ${process.pid}\n`;
      conn.end(`HTTP/1.0 200 OK\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
    }
  });
  conn.on("error", () => {});
});
server.listen({ fd: 3 });
process.on("SIGTERM", () => server.close(() => process.exit(0)));

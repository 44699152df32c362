// Bun's node:http given the socket at fd 3: Bun ignores `fd` and listens on a port of its own
// (oven-sh/bun#22559), which this prints; the test shows it. Use node:net (bun_net.js).
const http = require("node:http");
const server = http.createServer((req, res) => res.end(`bun http pid ${process.pid}\n`));
server.listen({ fd: 3 }, () => console.error(`bun_http.js listening on ${JSON.stringify(server.address())}`));

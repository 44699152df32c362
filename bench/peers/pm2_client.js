// `pm2 reload` and `pm2 scale` from one long-lived client (PM2's own API), so that a reload
// window starts when PM2's daemon gets the command, not when a new pm2 CLI process has
// started. Reads `reload NAME` and `scale NAME N` lines; answers each with `ok` or
// `error: ...`. Usage: node pm2_client.js PATH_TO_PM2 (with PM2_HOME set).
const pm2 = require(process.argv[2]);
const readline = require("readline");

pm2.connect((err) => {
  if (err) {
    console.log(`error: ${err.message}`);
    process.exit(1);
  }
  const done = (e) => console.log(e ? `error: ${e.message || e}` : "ok");
  const lines = readline.createInterface({ input: process.stdin });
  lines.on("line", (line) => {
    const [command, name, n] = line.split(" ");
    if (command === "reload") pm2.reload(name, done);
    else if (command === "scale") pm2.scale(name, Number(n), done);
    else done(new Error(`unknown command ${command}`));
  });
  lines.on("close", () => pm2.disconnect());
});

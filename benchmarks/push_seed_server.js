// The seed side of the push benchmark: users-session-manager@1.0.9 on Node's socket.io server,
// wired as the seed's README shows (a client emits `session_key` and joins the room named by
// its key; `notifyClientToLogout` emits `logout` to that room, with sessionkit's payload), driven
// by benchmarks/push.py through stdin/stdout with the commands of benchmarks/push_server.py:
//
//   node --expose-gc push_seed_server.js SEED_DIR PUSH_DIR
//
// As in the seed's README, the sockets stay connected after their logout (sessionkit's default
// disconnects them): its burst ends once every client has its logout (`done`).
"use strict";

const fs = require("fs");
const http = require("http");
const path = require("path");
const readline = require("readline");

const [seedDir, pushDir] = process.argv.slice(2);
const SessionManager = require(path.resolve(seedDir, "node_modules", "users-session-manager"));
const { Server } = require(path.resolve(pushDir, "node_modules", "socket.io"));

const HOUR = 3600; // seconds: no session ends before the benchmark arms it
const PAGE = 4096;

function rss() {
  // Resident memory from /proc, as the Python side reads it.
  return Number(fs.readFileSync("/proc/self/statm", "utf8").split(" ")[1]) * PAGE;
}

function say(fields) {
  fs.writeSync(1, JSON.stringify(fields) + "\n"); // synchronous: process.exit() follows
}

function cpuSeconds() {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
}

function nowSeconds() {
  return (performance.timeOrigin + performance.now()) / 1000;
}

const sm = new SessionManager();
const httpServer = http.createServer();
const io = new Server(httpServer);
sm.initSocketReference(io);

io.on("connection", (sk) => {
  sk.on("session_key", (data, ack) => {
    sk.join(data.session_key);
    if (typeof ack === "function") ack(true);
  });
});

sm.on("notifyClientToLogout", (server, key) => {
  server.in(key).emit("logout", { reason: "expired" });
});
sm.on("error", () => {}); // checkSessionStatus reports rejected keys here

function untilNoSockets(done) {
  const poll = () => (io.engine.clientsCount === 0 ? done() : setTimeout(poll, 5));
  poll();
}

let keys = [];
let burstCpu = 0;
httpServer.listen(0, "127.0.0.1", () => say({ port: httpServer.address().port }));

const input = readline.createInterface({ input: process.stdin });
input.on("line", (line) => {
  const [command, ...args] = line.trim().split(/\s+/);
  if (command === "sessions") {
    sm.setSessionTimeOut(HOUR);
    keys = [];
    for (let i = 0; i < Number(args[0]); i++) keys.push(sm.loadNewSession(`user${i}`));
    fs.writeFileSync(args[1], keys.join("\n") + "\n");
    say({ made: keys.length });
  } else if (command === "rss") {
    global.gc();
    global.gc();
    say({ rss: rss(), sockets: io.engine.clientsCount });
  } else if (command === "arm") {
    global.gc(); // each measured window starts from a collected heap, as on the Python side
    const timeout = Number(args[0]);
    sm.setSessionTimeOut(timeout);
    const deadlines = keys.map((key) => {
      const at = nowSeconds() + timeout;
      sm.restartSessionTimer(key);
      return at;
    });
    fs.writeFileSync(args[1], JSON.stringify(deadlines));
    burstCpu = cpuSeconds();
    say({ armed: deadlines.length });
  } else if (command === "mark" || command === "done") {
    say({ cpu: cpuSeconds() - burstCpu, gc: null });
  } else if (command === "watch") {
    global.gc();
    burstCpu = cpuSeconds();
    say({ watching: true });
  } else if (command === "left") {
    untilNoSockets(() => say({ cpu: cpuSeconds() - burstCpu, gc: null }));
  } else if (command === "quit") {
    input.close();
    io.close();
    process.exit(0);
  }
});

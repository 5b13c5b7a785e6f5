// The seed's side of the suite: users-session-manager@1.0.9 through the workloads sessionkit
// runs in benchmarks/sessions.py and benchmarks/push.py. One JSON object per answer on stdout.
//
//   node --expose-gc seed.js SEED_DIR ops SESSIONS OPS LOGGED_USERS(0|1)
//   node --expose-gc seed.js SEED_DIR expiry SESSIONS TIMEOUT_SECONDS
//   node --expose-gc seed.js SEED_DIR logged-users SESSIONS
//   node --expose-gc seed.js SEED_DIR push PUSH_DIR
//
// logged-users prints {"ready": true} once its sessions exist, then calls getLoggedUsers(); the
// driver kills it when its time box runs out. push serves Socket.IO on a free port, wired as the
// seed's README shows (a client emits `session_key` and joins the room named by its key;
// `notifyClientToLogout` emits `logout` to that room, with sessionkit's payload), and answers
// the driver's commands on stdin as `python -m benchmarks.push serve` does. As in the seed's
// README, the sockets stay connected after their logout (sessionkit's default disconnects them).
"use strict";

const fs = require("fs");
const path = require("path");

const [seedDir, mode, ...rest] = process.argv.slice(2);
const SessionManager = require(path.resolve(seedDir, "node_modules", "users-session-manager"));
const HOUR = 3600; // seconds: nothing expires before the benchmark says so
const now = () => Number(process.hrtime.bigint()) / 1e9; // seconds, monotonic
const say = (fields) => fs.writeSync(1, JSON.stringify(fields) + "\n"); // process.exit() follows

function manager(timeout) {
  const sm = new SessionManager();
  sm.setSessionTimeOut(timeout);
  sm.on("error", () => {}); // an unheard "error" event would throw
  return sm;
}

function collect() {
  global.gc();
  global.gc();
}

function timed(keys, fn) {
  const start = now();
  for (let i = 0; i < keys.length; i++) {
    if (!fn(keys[i], i)) throw new Error("a call failed on a live session");
  }
  return keys.length / (now() - start);
}

function ops(sessions, count, loggedUsers) {
  const sm = manager(HOUR);
  const usernames = Array.from({ length: sessions }, (_, i) => `user${i}`);
  const keys = new Array(sessions).fill(null);
  collect();
  const before = process.memoryUsage();
  const start = now();
  for (let i = 0; i < sessions; i++) keys[i] = sm.loadNewSession(usernames[i]);
  const createOps = sessions / (now() - start);
  collect();
  const after = process.memoryUsage();
  for (let i = keys.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1)); // a random sample, in a random order
    [keys[i], keys[j]] = [keys[j], keys[i]];
  }
  const picked = keys.slice(0, count);
  const result = {
    create_ops: createOps,
    heap_per_session: (after.heapUsed - before.heapUsed) / sessions,
    rss_per_session: (after.rss - before.rss) / sessions,
    check_ops: timed(picked, (k) => sm.checkSessionStatus(k)),
    restart_ops: timed(picked, (k) => sm.restartSessionTimer(k)),
    set_data_ops: timed(picked, (k, i) => sm.setSessionData(k, { n: i, role: "user" })),
    get_data_ops: timed(picked, (k) => sm.getSessionData(k) !== false),
  };
  if (loggedUsers) {
    const t0 = now();
    if (sm.getLoggedUsers().length !== sessions) throw new Error("getLoggedUsers lost sessions");
    result.get_logged_users_s = now() - t0;
  }
  result.delete_ops = timed(picked, (k) => sm.deleteSession(k));
  return result;
}

function expiry(sessions, timeout) {
  const sm = manager(timeout);
  const deadlines = new Map();
  let [ended, lastEnd, lateness, stall, last] = [0, 0, 0, 0, now()];
  return new Promise((done) => {
    sm.on("sessionDeleted", (key) => {
      lastEnd = now();
      lateness = Math.max(lateness, lastEnd - deadlines.get(key));
      if (++ended === sessions) done();
    });
    for (let i = 0; i < sessions; i++) deadlines.set(sm.loadNewSession(`user${i}`), now() + timeout);
    const probe = () => {
      // A 1 ms timer: any extra delay is time the loop spent elsewhere.
      stall = Math.max(stall, now() - last - 0.001);
      last = now();
      setTimeout(probe, 1);
    };
    setTimeout(probe, 1);
    setTimeout(done, (timeout + 15) * 1000);
  }).then(() => ({
    ended,
    expiry_stall_ms: stall * 1000,
    expiry_drain_s: lastEnd - deadlines.values().next().value, // the first made is due first
    expiry_lateness_s: lateness,
  }));
}

function push(pushDir) {
  const { Server } = require(path.resolve(pushDir, "node_modules", "socket.io"));
  const cpu = () => (process.cpuUsage().user + process.cpuUsage().system) / 1e6;
  const sm = manager(HOUR);
  const server = require("http").createServer();
  const io = new Server(server);
  sm.initSocketReference(io);
  io.on("connection", (sk) =>
    sk.on("session_key", (data, ack) => {
      sk.join(data.session_key);
      if (typeof ack === "function") ack(true);
    }),
  );
  sm.on("notifyClientToLogout", (io, key) => io.in(key).emit("logout", { reason: "expired" }));
  let [keys, from] = [[], 0];
  server.listen(0, "127.0.0.1", () => say({ port: server.address().port }));
  require("readline")
    .createInterface({ input: process.stdin })
    .on("line", (line) => {
      const [command, ...args] = line.trim().split(/\s+/);
      if (command === "sessions") {
        sm.setSessionTimeOut(HOUR);
        keys = Array.from({ length: Number(args[0]) }, (_, i) => sm.loadNewSession(`user${i}`));
        fs.writeFileSync(args[1], keys.join("\n") + "\n");
        say({ made: keys.length });
      } else if (command === "rss") {
        collect();
        const pages = fs.readFileSync("/proc/self/statm", "utf8").split(" ")[1];
        say({ rss: Number(pages) * 4096, sockets: io.engine.clientsCount }); // as Python reads it
      } else if (command === "arm" || command === "watch") {
        global.gc(); // each measured window starts from a collected heap, as on Python's side
        if (command === "arm") {
          sm.setSessionTimeOut(Number(args[0]));
          const deadlines = keys.map((key) => {
            const at = (performance.timeOrigin + performance.now()) / 1000 + Number(args[0]);
            sm.restartSessionTimer(key);
            return at;
          });
          fs.writeFileSync(args[1], JSON.stringify(deadlines));
        }
        from = cpu();
        say({ armed: keys.length });
      } else if (command === "mark" || command === "done") {
        say({ cpu: cpu() - from, gc: null });
      } else if (command === "left") {
        const poll = () => (io.engine.clientsCount ? setTimeout(poll, 5) : say({ cpu: cpu() - from, gc: null }));
        poll();
      } else if (command === "quit") {
        process.exit(0);
      }
    });
}

async function main() {
  let result;
  if (mode === "ops") result = ops(...rest.slice(0, 2).map(Number), rest[2] === "1");
  else if (mode === "expiry") result = await expiry(...rest.map(Number));
  else if (mode === "push") return push(rest[0]);
  else {
    const sm = manager(HOUR);
    for (let i = 0; i < Number(rest[0]); i++) sm.loadNewSession(`user${i}`);
    say({ ready: true });
    const t0 = now();
    sm.getLoggedUsers();
    result = { get_logged_users_s: now() - t0 };
  }
  say(result);
  process.exit(0); // pending session timers would keep the process alive for an hour
}

main().catch((err) => {
  process.stderr.write(`${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});

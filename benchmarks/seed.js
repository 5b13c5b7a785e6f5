// node --expose-gc seed.js SEED_DIR ops|expiry|push ...: the seed's side
// (users-session-manager@1.0.9) of benchmarks/sessions.py and benchmarks/push.py, with their
// modes and JSON fields. push serves Socket.IO on a free port, wired as the seed's README
// shows, and answers the commands `python -m benchmarks.push serve` does; the sockets stay
// connected after their logout, as there.
"use strict";

const fs = require("fs");
const path = require("path");

const [seedDir, mode, ...rest] = process.argv.slice(2);
const SessionManager = require(path.resolve(seedDir, "node_modules", "users-session-manager"));
const HOUR = 3600; // seconds: nothing expires before the benchmark says so
const now = () => Number(process.hrtime.bigint()) / 1e9; // seconds, monotonic
const say = (fields) => fs.writeSync(1, JSON.stringify(fields) + "\n"); // process.exit() follows

const collect = () => global.gc() || global.gc();

function manager(timeout) {
  const sm = new SessionManager();
  sm.setSessionTimeOut(timeout);
  sm.on("error", () => {}); // an unheard "error" event would throw
  return sm;
}

function timed(keys, fn) {
  const start = now();
  for (let i = 0; i < keys.length; i++) {
    if (!fn(keys[i], i)) throw new Error("a call failed on a live session");
  }
  return keys.length / (now() - start);
}

function ops(sessions, count, listUsers) {
  const sm = manager(HOUR);
  const usernames = Array.from({ length: sessions }, (_, i) => `user${i}`);
  const keys = new Array(sessions).fill(null);
  const before = collect() || process.memoryUsage();
  const start = now();
  for (let i = 0; i < sessions; i++) keys[i] = sm.loadNewSession(usernames[i]);
  const createOps = sessions / (now() - start);
  const after = collect() || process.memoryUsage();
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
  if (listUsers === 1) {
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
  let [ended, lastEnd, lateness, stall, last] = [0, 0, 0, 0, 0];
  return new Promise((done) => {
    sm.on("sessionDeleted", (key) => {
      lastEnd = now();
      lateness = Math.max(lateness, lastEnd - deadlines.get(key));
      if (++ended === sessions) done();
    });
    for (let i = 0; i < sessions; i++) deadlines.set(sm.loadNewSession(`user${i}`), now() + timeout);
    const probe = (t = now()) => {
      // A 1 ms timer: any extra delay is time the loop spent elsewhere.
      [stall, last] = [Math.max(stall, t - last - 0.001), t];
      setTimeout(probe, 1);
    };
    last = now(); // from here: the logins above are no stall
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
  const cpu = (used = process.cpuUsage()) => (used.user + used.system) / 1e6;
  const sm = manager(HOUR);
  const server = require("http").createServer();
  const io = new Server(server);
  sm.initSocketReference(io);
  // As the seed's README shows: the client sends its key and joins the room named by it.
  io.on("connection", (sk) => sk.on("session_key", (data, ack) => ack(sk.join(data.session_key))));
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
        const pages = Number(fs.readFileSync("/proc/self/statm", "utf8").split(" ")[1]);
        say({ rss: pages * 4096, sockets: io.engine.clientsCount }); // as Python's side reads it
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

if (mode === "push") push(rest[0]);
else {
  const modes = { ops, expiry };
  // Then exit: pending session timers would keep the process alive for an hour.
  Promise.resolve(modes[mode](...rest.map(Number))).then((result) => (say(result), process.exit(0)));
}

// The seed side of the benchmark: drives users-session-manager@1.0.9 through the same workload
// as benchmarks/python_side.py and prints one JSON object on stdout.
//
//   node --expose-gc seed_bench.js SEED_DIR ops SESSIONS OPS LOGGED_USERS(0|1)
//   node --expose-gc seed_bench.js SEED_DIR expiry SESSIONS TIMEOUT_SECONDS
//   node --expose-gc seed_bench.js SEED_DIR logged-users SESSIONS
//
// The logged-users mode prints {"ready": true} once its sessions exist and then calls
// getLoggedUsers(); the driver kills it when its time box runs out.
"use strict";

const path = require("path");

const [seedDir, mode, ...rest] = process.argv.slice(2);
const SessionManager = require(path.resolve(seedDir, "node_modules", "users-session-manager"));

const HOUR = 3600; // seconds: nothing expires during the ops run

function gc() {
  if (typeof global.gc !== "function") {
    throw new Error("run node with --expose-gc");
  }
  global.gc();
  global.gc();
}

function now() {
  return Number(process.hrtime.bigint()) / 1e9; // seconds, monotonic
}

// A small deterministic PRNG, so both sides visit keys in a comparable random order.
function rng(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function sample(keys, count) {
  const order = keys.slice();
  const random = rng(12345);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    const t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  return order.slice(0, count);
}

function timed(keys, fn) {
  const start = now();
  let ok = 0;
  for (let i = 0; i < keys.length; i++) {
    if (fn(keys[i], i)) ok++;
  }
  const elapsed = now() - start;
  if (ok !== keys.length) {
    throw new Error(`only ${ok} of ${keys.length} calls succeeded`);
  }
  return keys.length / elapsed;
}

function ops(sessions, count, loggedUsers) {
  const sm = new SessionManager();
  sm.setSessionTimeOut(HOUR);
  sm.on("error", () => {}); // an unheard "error" event would throw
  const usernames = new Array(sessions);
  for (let i = 0; i < sessions; i++) usernames[i] = `user${i}`;
  const keys = new Array(sessions).fill(null);

  gc();
  const heap0 = process.memoryUsage().heapUsed;
  const rss0 = process.memoryUsage().rss;
  const start = now();
  for (let i = 0; i < sessions; i++) keys[i] = sm.loadNewSession(usernames[i]);
  const createElapsed = now() - start;
  gc();
  const heap1 = process.memoryUsage().heapUsed;
  const rss1 = process.memoryUsage().rss;

  const picked = sample(keys, count);
  const result = {
    sessions,
    ops: count,
    create_ops: sessions / createElapsed,
    heap_per_session: (heap1 - heap0) / sessions,
    rss_per_session: (rss1 - rss0) / sessions,
    check_ops: timed(picked, (k) => sm.checkSessionStatus(k)),
    restart_ops: timed(picked, (k) => sm.restartSessionTimer(k)),
    set_data_ops: timed(picked, (k, i) => sm.setSessionData(k, { n: i, role: "user" })),
    get_data_ops: timed(picked, (k) => sm.getSessionData(k) !== false),
  };
  if (loggedUsers) {
    const t0 = now();
    const users = sm.getLoggedUsers();
    result.get_logged_users_s = now() - t0;
    if (users.length !== sessions) throw new Error("getLoggedUsers lost sessions");
  }
  result.delete_ops = timed(picked, (k) => sm.deleteSession(k));
  return result;
}

function expiry(sessions, timeout) {
  const sm = new SessionManager();
  sm.setSessionTimeOut(timeout);
  sm.on("error", () => {});
  const deadlines = new Map();
  let ended = 0;
  let firstDeadline = Infinity;
  let lastEnd = 0;
  let worstLateness = 0;
  let worstStall = 0;
  let done;
  const finished = new Promise((resolve) => (done = resolve));

  sm.on("sessionDeleted", (key) => {
    const t = now();
    const late = t - deadlines.get(key);
    if (late > worstLateness) worstLateness = late;
    lastEnd = t;
    if (++ended === sessions) done();
  });
  for (let i = 0; i < sessions; i++) {
    const key = sm.loadNewSession(`user${i}`);
    const deadline = now() + timeout;
    deadlines.set(key, deadline);
    if (deadline < firstDeadline) firstDeadline = deadline;
  }
  // The probe: a 1 ms timer; any extra delay is time the loop spent elsewhere.
  let last = now();
  let stopped = false;
  const probe = () => {
    const t = now();
    const stall = t - last - 0.001;
    if (stall > worstStall) worstStall = stall;
    last = t;
    if (!stopped) setTimeout(probe, 1);
  };
  setTimeout(probe, 1);
  const guard = setTimeout(() => done(), (timeout + 15) * 1000);
  return finished.then(() => {
    stopped = true;
    clearTimeout(guard);
    return {
      sessions,
      ended,
      expiry_stall_ms: worstStall * 1000,
      expiry_drain_s: lastEnd - firstDeadline,
      expiry_lateness_s: worstLateness,
    };
  });
}

async function main() {
  let result;
  if (mode === "ops") {
    const [sessions, count, loggedUsers] = rest.map(Number);
    result = ops(sessions, count, loggedUsers === 1);
  } else if (mode === "expiry") {
    const [sessions, timeout] = rest.map(Number);
    result = await expiry(sessions, timeout);
  } else if (mode === "logged-users") {
    const sessions = Number(rest[0]);
    const sm = new SessionManager();
    sm.setSessionTimeOut(HOUR);
    for (let i = 0; i < sessions; i++) sm.loadNewSession(`user${i}`);
    process.stdout.write(JSON.stringify({ ready: true }) + "\n");
    const t0 = now();
    const users = sm.getLoggedUsers();
    result = { sessions, get_logged_users_s: now() - t0, users: users.length };
  } else {
    throw new Error(`unknown mode ${mode}`);
  }
  process.stdout.write(JSON.stringify(result) + "\n");
  process.exit(0); // pending session timers would keep the process alive for an hour
}

main().catch((err) => {
  process.stderr.write(String(err && err.stack ? err.stack : err) + "\n");
  process.exit(1);
});

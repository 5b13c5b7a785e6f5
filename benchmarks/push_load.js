// node push_load.js PUSH_DIR URL KEYS_FILE FIRST COUNT auth|event: the push benchmark's load
// generator (benchmarks/push.py), the same for both servers. Connects keys FIRST..FIRST+COUNT-1
// of KEYS_FILE with Node's socket.io-client (`auth`: the key in the handshake, and the server
// disconnects each socket after its logout; `event`: the seed's flow, emit `session_key` after
// connecting), IN_FLIGHT at a time, and prints {"connected", "connect_s"}. Then on stdin `wait`
// prints {"all_logouts": true} once every client has its `logout`, and once they are also
// disconnected (`auth`) or a time box runs out, when each arrived and how many each got;
// `leave` disconnects every client at once and prints {"left": n}.
"use strict";

const fs = require("fs");
const path = require("path");

const [pushDir, url, keysFile, first, count, mode] = process.argv.slice(2);
const { io } = require(path.resolve(pushDir, "node_modules", "socket.io-client"));
const IN_FLIGHT = 100;
const WAIT_BOX_MS = 120000;
const keys = fs.readFileSync(keysFile, "utf8").split("\n").slice(first, Number(first) + Number(count));
const clients = new Array(keys.length);
const received = new Array(keys.length).fill(null);
const counts = new Array(keys.length).fill(0);
const say = (fields) => fs.writeSync(1, JSON.stringify(fields) + "\n"); // process.exit() follows
let disconnected = 0;
let onChange = () => {};

function connectOne(i) {
  return new Promise((resolve, reject) => {
    const options = { transports: ["websocket"], reconnection: false, forceNew: true };
    if (mode !== "event") options.auth = { session_key: keys[i] };
    const socket = (clients[i] = io(url, options));
    socket.on("logout", () => {
      if (counts[i]++ === 0) received[i] = (performance.timeOrigin + performance.now()) / 1000;
      onChange();
    });
    socket.on("disconnect", () => onChange(++disconnected));
    socket.once("connect_error", reject);
    socket.once("connect", () => {
      if (mode !== "event") return resolve();
      socket.emit("session_key", { session_key: keys[i], user: `user${i}` }, resolve);
    });
  });
}

async function connectAll() {
  let next = 0;
  const started = performance.now();
  const worker = async () => {
    while (next < keys.length) await connectOne(next++);
  };
  await Promise.all(Array.from({ length: Math.min(IN_FLIGHT, keys.length) }, worker));
  return (performance.now() - started) / 1000;
}

function wait() {
  let [finished, allLogouts] = [false, false];
  const finish = () => {
    if (!finished) say({ received, counts, disconnected });
    finished = true;
  };
  const box = setTimeout(finish, WAIT_BOX_MS);
  onChange = () => {
    const logouts = counts.every((n) => n > 0);
    if (logouts && !allLogouts) say({ all_logouts: (allLogouts = true) });
    if (logouts && (mode !== "auth" || disconnected === keys.length)) {
      clearTimeout(box);
      // A duplicate would come before its socket's disconnect; with sockets that stay
      // connected, give it a moment.
      setTimeout(finish, mode !== "auth" ? 300 : 0);
    }
  };
  onChange();
}

connectAll().then((seconds) => {
  say({ connected: keys.length, connect_s: seconds });
  require("readline")
    .createInterface({ input: process.stdin })
    .once("line", (line) => {
      if (line.trim() === "wait") return wait();
      for (const socket of clients) socket.disconnect(); // leave
      setTimeout(() => (say({ left: keys.length }), process.exit(0)), 100);
    });
}); // a failed connection rejects: Node prints why and exits non-zero

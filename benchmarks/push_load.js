// The push benchmark's load generator, the same for both servers: Node's socket.io-client
// connects one websocket per session key and records when each `logout` arrives.
//
//   node push_load.js PUSH_DIR URL KEYS_FILE FIRST COUNT auth|auth-keep|event
//
// Connects keys FIRST .. FIRST+COUNT-1 of KEYS_FILE (`auth`: the key in the handshake's auth, as
// sessionkit recommends, and the server disconnects each socket after its logout; `auth-keep`:
// the same, but the sockets stay; `event`: connect, then emit `session_key` with an ack, the
// seed's flow, and the sockets stay), at most IN_FLIGHT handshakes at a time, and prints
// {"connected": n, "connect_s": s}.
// Then it reads one command on stdin:
//   wait  - prints {"all_logouts": true} once every client has had its `logout`; then, once
//           every client has also been disconnected after it (with `auth`: sessionkit's
//           default) or a time box runs out, prints {"received": [epoch seconds or null],
//           "counts": [logouts each]}, and keeps its sockets until killed
//   leave - disconnects every client at once and prints {"left": n}
"use strict";

const fs = require("fs");
const path = require("path");
const readline = require("readline");

const [pushDir, url, keysFile, firstArg, countArg, mode] = process.argv.slice(2);
const { io } = require(path.resolve(pushDir, "node_modules", "socket.io-client"));

const IN_FLIGHT = 100;
const WAIT_BOX_MS = 120000;
const first = Number(firstArg);
const count = Number(countArg);
const keys = fs.readFileSync(keysFile, "utf8").split("\n").filter(Boolean).slice(first, first + count);

const clients = new Array(keys.length);
const received = new Array(keys.length).fill(null);
const counts = new Array(keys.length).fill(0);
let disconnected = 0;
let onChange = () => {};

function nowSeconds() {
  return (performance.timeOrigin + performance.now()) / 1000;
}

function say(fields) {
  fs.writeSync(1, JSON.stringify(fields) + "\n"); // synchronous: process.exit() follows
}

function connectOne(i) {
  return new Promise((resolve, reject) => {
    const options = { transports: ["websocket"], reconnection: false, forceNew: true };
    if (mode !== "event") options.auth = { session_key: keys[i] };
    const socket = io(url, options);
    clients[i] = socket;
    socket.on("logout", () => {
      if (counts[i]++ === 0) received[i] = nowSeconds();
      onChange();
    });
    socket.on("disconnect", () => {
      disconnected++;
      onChange();
    });
    socket.once("connect_error", (err) => reject(err));
    socket.once("connect", () => {
      if (mode !== "event") return resolve();
      socket.emit("session_key", { session_key: keys[i], user: `user${i}` }, () => resolve());
    });
  });
}

async function connectAll() {
  let next = 0;
  const started = performance.now();
  async function worker() {
    while (next < keys.length) {
      await connectOne(next++);
    }
  }
  await Promise.all(Array.from({ length: Math.min(IN_FLIGHT, keys.length) }, worker));
  return (performance.now() - started) / 1000;
}

connectAll().then(
  (seconds) => {
    say({ connected: keys.length, connect_s: seconds });
    const input = readline.createInterface({ input: process.stdin });
    input.once("line", (line) => {
      const command = line.trim();
      if (command === "wait") {
        let finished = false;
        const finish = () => {
          if (!finished) say({ received, counts, disconnected });
          finished = true;
        };
        const box = setTimeout(finish, WAIT_BOX_MS);
        let allLogouts = false;
        onChange = () => {
          const logouts = counts.every((n) => n > 0);
          if (logouts && !allLogouts) {
            allLogouts = true;
            say({ all_logouts: true });
          }
          const gone = mode !== "auth" || disconnected === keys.length;
          if (!finished && gone && logouts) {
            clearTimeout(box);
            // A duplicate would come before its socket's disconnect; with sockets that stay
            // connected, give it a moment.
            setTimeout(finish, mode !== "auth" ? 300 : 0);
          }
        };
        onChange();
      } else if (command === "leave") {
        for (const socket of clients) socket.disconnect();
        setTimeout(() => {
          say({ left: keys.length });
          process.exit(0);
        }, 100);
      }
    });
  },
  (err) => {
    process.stderr.write(`connect failed: ${err && err.message}\n`);
    process.exit(1);
  },
);

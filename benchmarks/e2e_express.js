// node e2e_express.js NODE_DIR KEYFILE SESSIONS REDIS_PORT: express-session with connect-redis
// (installed in NODE_DIR) serving the route of benchmarks/e2e.py. Before it listens on
// 127.0.0.1 (a free port, printed as {"port": P}) it stores SESSIONS sessions and writes their
// signed cookies to KEYFILE. rolling: true, resave: false: each request reads the session (GET)
// and, unmodified, touches it (EXPIRE), the store's own fast path.
"use strict";

const fs = require("fs");
const path = require("path");
const crypto = require("crypto");
const { createRequire } = require("module");

const [nodeDir, keyfile, sessions, redisPort] = process.argv.slice(2);
const need = createRequire(path.resolve(nodeDir, "package.json"));
const express = need("express");
const session = need("express-session");
const { RedisStore } = need("connect-redis");
const { createClient } = need("redis");
// The version express-session signs its cookies with.
const signature = createRequire(need.resolve("express-session"))("cookie-signature");

const SECRET = crypto.randomBytes(32).toString("hex");
const HOUR_MS = 3600 * 1000; // no session idles out during a run

async function main() {
  const client = createClient({ url: `redis://127.0.0.1:${redisPort}` });
  await client.connect();
  const store = new RedisStore({ client, prefix: "sess:" });

  const app = express();
  const options = { secret: SECRET, store, resave: false, saveUninitialized: false };
  app.use(session({ ...options, rolling: true, cookie: { maxAge: HOUR_MS } }));
  app.get("/api/me", (req, res) => {
    if (!req.session.user) return res.status(401).json({ logout: true });
    res.json({ user: req.session.user });
  });

  const lines = [];
  for (let i = 0; i < Number(sessions); i++) {
    const sid = crypto.randomBytes(24).toString("base64url"); // express-session's uid-safe(24)
    const cookie = { originalMaxAge: HOUR_MS, expires: new Date(Date.now() + HOUR_MS) };
    await store.set(sid, { cookie: { ...cookie, httpOnly: true, path: "/" }, user: `user${i}` });
    lines.push(`Cookie: connect.sid=${encodeURIComponent("s:" + signature.sign(sid, SECRET))}`);
  }
  fs.writeFileSync(keyfile, lines.join("\n") + "\n");

  const server = app.listen(0, "127.0.0.1", () => {
    console.log(JSON.stringify({ port: server.address().port }));
  });
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});

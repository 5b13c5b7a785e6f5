// The Node side of the end-to-end benchmark (benchmarks/e2e.py): express-session with
// connect-redis, serving the same route as the Python sides.
//
//   node e2e_express.js NODE_DIR KEYFILE SESSIONS REDIS_PORT
//
// NODE_DIR is the ignored folder the driver installed express, express-session, connect-redis
// and redis into. Before it listens on 127.0.0.1 (a free port, printed as {"port": P}), the
// server stores SESSIONS sessions through connect-redis (each holding {user: ...}, as the Python
// sides do) and writes one "Cookie: connect.sid=..." line per session (the signed cookie
// express-session expects) to KEYFILE. rolling: true, resave: false: each request reads the
// session (GET) and, unmodified, touches it (EXPIRE), the store's own fast path.
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
const BATCH = 200;

async function main() {
  const client = createClient({ url: `redis://127.0.0.1:${redisPort}` });
  await client.connect();
  const store = new RedisStore({ client, prefix: "sess:" });

  const app = express();
  app.use(
    session({
      secret: SECRET,
      store,
      resave: false,
      saveUninitialized: false,
      rolling: true,
      cookie: { maxAge: HOUR_MS },
    }),
  );
  app.get("/api/me", (req, res) => {
    if (!req.session.user) {
      res.status(401).json({ logout: true });
      return;
    }
    res.json({ user: req.session.user });
  });

  const lines = [];
  for (let start = 0; start < Number(sessions); start += BATCH) {
    const batch = [];
    for (let i = start; i < Math.min(Number(sessions), start + BATCH); i++) {
      const sid = crypto.randomBytes(24).toString("base64url"); // express-session's uid-safe(24)
      const expires = new Date(Date.now() + HOUR_MS);
      const sess = {
        cookie: { originalMaxAge: HOUR_MS, expires, httpOnly: true, path: "/" },
        user: `user${i}`,
      };
      batch.push(store.set(sid, sess));
      lines.push(`Cookie: connect.sid=${encodeURIComponent("s:" + signature.sign(sid, SECRET))}`);
    }
    await Promise.all(batch);
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

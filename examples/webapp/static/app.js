// The seed's frontend: TryLogin / GetTableData, plus the Socket.IO subscription that brings
// the login form back when the server says "logout". Cookie mode: the session key lives in an
// HttpOnly cookie that the browser sends with every same-origin call and socket handshake;
// this script never sees it.
"use strict";

let socket = null;
let deadline = 0; // performance.now() at which the server ends the session
let ticker = null;

const $ = (id) => document.getElementById(id);

function say(text, kind = "info") {
  const box = $("message");
  box.textContent = text;
  box.className = "notice " + kind;
  box.hidden = !text;
}

function setRemaining(seconds) {
  deadline = performance.now() + seconds * 1000;
  if (!ticker) ticker = setInterval(tick, 250);
  tick();
}

function tick() {
  const left = Math.max(0, Math.ceil((deadline - performance.now()) / 1000));
  $("countdown").textContent = left + " s";
}

async function api(name, body = {}, method = "POST") {
  const headers = { "Accept": "application/json" };
  const options = { method, headers, credentials: "same-origin" };
  if (method !== "GET") {
    headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch("/api/" + name, options);
  const data = await response.json();
  if (data.logout) showLogin(data.message, "bad"); // the seed: if (sectors.logout) Logout()
  return data;
}

async function tryLogin(user, pwd) {
  const data = await api("try_login", { username: user, password: pwd });
  if (!data.accepted) {
    say(data.message, "bad");
    return;
  }
  $("password").value = "";
  showApp(data.user_data);
  say(data.message);
}

function showApp(user) {
  $("who").textContent = user.username;
  $("login-form").hidden = true;
  $("app-view").hidden = false;
  $("table").hidden = true;
  setRemaining(user.expires_in);
  connectSocket();
  loadSessions();
}

async function loadSessions() {
  const data = await api("sessions", {}, "GET");
  if (!data.accepted) return;
  const tbody = $("sessions").querySelector("tbody");
  tbody.replaceChildren(...data.sessions.map((s) => {
    const tr = document.createElement("tr");
    tr.dataset.id = s.id;
    if (s.current) tr.className = "current";
    const device = document.createElement("td");
    device.className = "device";
    device.textContent = s.device;
    device.title = s.user_agent || "";
    if (s.current) {
      const mark = document.createElement("div");
      mark.className = "this";
      mark.textContent = "this device";
      device.append(mark);
    }
    const cells = [["IP", s.ip || "?"], ["Created", when(s.created_at)],
                   ["Last active", when(s.last_active_at)]].map(([label, text]) => {
      const td = document.createElement("td");
      td.dataset.label = label; // a phone shows it before the value, in place of the header
      td.textContent = text;
      return td;
    });
    const end = document.createElement("button");
    end.type = "button";
    end.className = "danger end";
    end.textContent = "End";
    end.addEventListener("click", () => endSession(s.id));
    const action = document.createElement("td");
    action.className = "action";
    action.append(end);
    tr.append(device, ...cells, action);
    return tr;
  }));
}

function when(iso) {
  return new Date(iso).toLocaleTimeString();
}

async function endSession(id) {
  const data = await api("end_session", { id });
  if (data.accepted) say(data.message);
  loadSessions();
}

async function endOtherSessions() {
  const data = await api("end_other_sessions");
  if (data.accepted) say(data.message);
  loadSessions();
}

function connectSocket() {
  if (typeof io === "undefined") {
    $("socket-state").textContent = "Socket: the socket.io client could not be loaded";
    return;
  }
  $("socket-state").textContent = "Socket: connecting…";
  // No auth payload: the handshake carries the session cookie, which the server reads.
  // WebSocket only, no long-polling: one connection, which stays on the worker that accepted
  // it, so no polling request can land on another worker (make demo-workers runs two).
  socket = io({ reconnection: false, transports: ["websocket"] });
  socket.on("connect", () => {
    $("socket-state").textContent = "Socket: connected";
    socket.emit("worker", (pid) => { $("socket-worker").textContent = "on worker " + pid; });
  });
  socket.on("connect_error", (err) => {
    $("socket-state").textContent = "Socket: refused (" + err.message + ")";
  });
  socket.on("session_expiring", ({ remaining }) => {
    setRemaining(remaining);
    say("Your session ends in " + Math.round(remaining) + " s: load data to stay.", "warn");
  });
  socket.on("logout", ({ reason }) => {
    const why = { expired: "your session expired", logout_all: "you logged out everywhere",
                  delete_all: "the server ended every session", evicted: "you logged in elsewhere",
                  absolute_timeout: "your session reached its time limit", logout: "the server logged you out",
                  suspicious: "your session was used from another browser or network" };
    showLogin("Logged out by the server: " + (why[reason] || reason) + ".", "bad");
  });
}

async function getTableData(page) {
  const data = await api("get_table_data", { page });
  if (!data.accepted) return;
  const tbody = $("table").querySelector("tbody");
  tbody.replaceChildren(...data.table_data.map((r) => {
    const tr = document.createElement("tr");
    for (const value of [r.sector, r.share, r.trend]) {
      const td = document.createElement("td");
      td.textContent = value;
      tr.append(td);
    }
    return tr;
  }));
  $("table").hidden = false;
  setRemaining(data.expires_in);
  say("Table loaded: the session timer restarted.");
  loadSessions();
}

function showLogin(text, kind) {
  if (socket) { socket.disconnect(); socket = null; }
  $("socket-worker").textContent = "";
  clearInterval(ticker);
  ticker = null;
  $("app-view").hidden = true;
  $("login-form").hidden = false;
  say(text, kind);
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    tryLogin($("username").value, $("password").value);
  });
  $("load").addEventListener("click", () => getTableData(1));
  $("logout").addEventListener("click", async () => {
    await api("logout");
    showLogin("You logged out.");
  });
  $("logout-all").addEventListener("click", () => api("logout_everywhere"));
  $("refresh-sessions").addEventListener("click", loadSessions);
  $("end-others").addEventListener("click", endOtherSessions);
  // A reload keeps the session the cookie holds; without one, the login form stays.
  fetch("/api/me", { credentials: "same-origin" }).then(async (response) => {
    if (response.ok) showApp((await response.json()).user_data);
  });
});

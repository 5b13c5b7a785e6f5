// The seed's frontend: TryLogin / GetTableData with the session_key header, plus the
// Socket.IO subscription that brings the login form back when the server says "logout".
"use strict";

let sessionKey = "";
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

async function api(name, body = {}) {
  const headers = { "Accept": "application/json", "Content-Type": "application/json" };
  if (sessionKey) headers["session_key"] = sessionKey;
  const response = await fetch("/api/" + name, {
    method: "POST", headers, body: JSON.stringify(body),
  });
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
  sessionKey = data.user_data.session_key;
  $("who").textContent = data.user_data.username;
  $("password").value = "";
  $("login-form").hidden = true;
  $("app-view").hidden = false;
  $("table").hidden = true;
  say(data.message);
  setRemaining(data.user_data.expires_in);
  connectSocket();
}

function connectSocket() {
  if (typeof io === "undefined") {
    $("socket-state").textContent = "Socket: the socket.io client could not be loaded";
    return;
  }
  // The key travels in the connect packet's auth payload, never in a URL.
  socket = io({ auth: { session_key: sessionKey }, reconnection: false });
  socket.on("connect", () => { $("socket-state").textContent = "Socket: connected"; });
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
                  absolute_timeout: "your session reached its time limit", logout: "the server logged you out" };
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
}

function showLogin(text, kind) {
  sessionKey = "";
  if (socket) { socket.disconnect(); socket = null; }
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
});

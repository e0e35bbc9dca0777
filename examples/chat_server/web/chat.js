// The chat page's client: one WebSocket to /ws carrying the chat's NDJSON
// messages, one JSON object per text message. Everything the server sends
// is shown with textContent, never parsed as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
let socket = null;
let me = null;        // the name we have
let joined = false;   // the first join succeeded
let room = "lobby";   // the room we are in (null after /leave)
let pendingName = null;
let opened = false;   // the current socket got as far as open
let retry = 1000;     // the next reconnect's delay, doubled up to 30 s
let maxMessage = 4096; // the server says, in its welcome
const users = new Map(); // folded name -> name, for the room we are in

function isOpen() { return socket !== null && socket.readyState === WebSocket.OPEN; }

// Sends a request; false (and nothing sent) when it cannot go: not
// connected, or larger than the server takes (it would close with 1009).
function send(object) {
  if (!isOpen()) return false;
  const text = JSON.stringify(object);
  if (new TextEncoder().encode(text).length > maxMessage) return false;
  socket.send(text);
  return true;
}

// As send, for what the user typed: says why when it cannot go, and keeps
// the text in the box so that nothing typed is lost.
function sendTyped(object, input) {
  if (!isOpen()) {
    line("error", [null, "not sent: not connected (reconnecting)"]);
    $("text").value = input;
    return false;
  }
  if (!send(object)) {
    line("error", [null, `not sent: longer than the server takes (${maxMessage} bytes)`]);
    $("text").value = input;
    return false;
  }
  return true;
}

function line(kind, ...parts) {
  const item = document.createElement("li");
  item.className = kind;
  for (const [cls, text] of parts) {
    const span = document.createElement("span");
    if (cls) span.className = cls;
    span.textContent = text;
    item.appendChild(span);
  }
  const pane = $("messages");
  const atBottom = pane.scrollHeight - pane.scrollTop - pane.clientHeight < 40;
  pane.appendChild(item);
  // A bounded pane: the page must not grow for ever either.
  while (pane.childElementCount > 2000) pane.removeChild(pane.firstElementChild);
  if (atBottom) pane.scrollTop = pane.scrollHeight;
}

function setStatus(text) { $("status").textContent = text; }

function fillList(list, items, current, onClick) {
  list.replaceChildren();
  for (const [label, key] of items) {
    const item = document.createElement("li");
    item.textContent = label;
    if (key !== undefined && current &&
        key.toLowerCase() === current.toLowerCase()) item.className = "current";
    if (onClick) item.addEventListener("click", () => onClick(key));
    list.appendChild(item);
  }
}

function showUsers() {
  const names = [...users.values()].sort((a, b) => a.toLowerCase().localeCompare(b.toLowerCase()));
  fillList($("users"), names.map((n) => [n]));
  $("room-name").textContent = room || "no room";
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  socket = new WebSocket(scheme + location.host + "/ws");
  setStatus("connecting");
  opened = false;
  socket.addEventListener("open", () => { opened = true; retry = 1000; setStatus("connected"); });
  socket.addEventListener("message", (event) => {
    let message;
    try { message = JSON.parse(event.data); } catch { return; }
    receive(message);
  });
  socket.addEventListener("close", (event) => {
    socket = null;
    const why = opened
      ? `connection closed (${event.code}${event.reason ? ": " + event.reason : ""})`
      // A refused handshake (403 for an origin not allowed, 503 when the
      // server is full) shows the page only 1006.
      : "could not connect (server down or full, or this page's origin not allowed)";
    if (!joined) {
      $("login-error").textContent = why;
      pendingName = null;
      setStatus("not connected");
      return;
    }
    // Back with the same name, in the same room, after a pause.
    line("error", [null, `${why}; reconnecting in ${retry / 1000} s`]);
    setStatus("reconnecting");
    setTimeout(() => { pendingName = me; connect(); }, retry);
    retry = Math.min(retry * 2, 30000);
  });
}

function receive(message) {
  const text = typeof message.message === "string" ? message.message : "";
  switch (message.type) {
    case "welcome":
      if (Number.isInteger(message.max_message)) maxMessage = message.max_message;
      if (pendingName) send({ type: "join", room: room || "lobby", username: pendingName });
      break;
    case "notification": {
      // The user list follows the notifications; the whole list is asked
      // for only when we enter a room (one request, not one per event).
      const entered = /^(\S+) joined (\S+)$/.exec(text);
      const left = /^(\S+) left (\S+)$/.exec(text);
      const renamed = /^(\S+) is now known as (\S+)$/.exec(text);
      const mine = (name) =>
        name.toLowerCase() === (pendingName || me || "").toLowerCase();
      if (entered && mine(entered[1])) {
        me = entered[1];
        room = entered[2];
        pendingName = null;
        users.clear();
        send({ type: "who" });
        send({ type: "rooms" });
        if (!joined) {
          joined = true;
          $("login").hidden = true;
          $("chat").hidden = false;
          $("text").focus();
        }
      } else if (entered) {
        users.set(entered[1].toLowerCase(), entered[1]);
      } else if (left && mine(left[1])) {
        room = null;
        users.clear();
      } else if (left) {
        users.delete(left[1].toLowerCase());
      } else if (renamed) {
        users.delete(renamed[1].toLowerCase());
        users.set(renamed[2].toLowerCase(), renamed[2]);
        if (mine(renamed[1])) me = renamed[2];
      }
      showUsers();
      setStatus(`connected as ${me || "?"}`);
      line("notice", [null, text]);
      break;
    }
    case "chat":
      line("chat", ["who", `${message.username}: `], [null, text]);
      break;
    case "action":
      line("action", [null, `* ${message.username} ${text}`]);
      break;
    case "private":
      line("private", ["who", `[private] ${message.from}: `], [null, text]);
      break;
    case "info":
      line("info", [null, text]);
      break;
    case "error":
      if (!joined) {
        $("login-error").textContent = text;
        pendingName = null;
      } else {
        line("error", [null, `error: ${text}`]);
      }
      break;
    case "rooms":
      if (Array.isArray(message.rooms)) {
        fillList($("rooms"),
          message.rooms.map((r) => [`${r.name} (${r.users})`, r.name]), room,
          (name) => send({ type: "join", room: name, username: me }));
      }
      break;
    case "who":
      if (Array.isArray(message.users)) {
        users.clear();
        for (const name of message.users) users.set(String(name).toLowerCase(), String(name));
        showUsers();
      }
      break;
  }
}

const HELP = "commands: /join ROOM, /rooms, /who, /nick NAME, /msg NAME TEXT, " +
  "/me ACTION, /leave, /help, /quit";

function command(input) {
  const [verb, ...rest] = input.slice(1).split(" ");
  const args = rest.join(" ").trim();
  switch (verb.toLowerCase()) {
    case "join":
      if (args) sendTyped({ type: "join", room: args, username: me }, input);
      else line("error", [null, "usage: /join ROOM"]);
      break;
    case "leave": sendTyped({ type: "leave" }, input); break;
    case "rooms":
      if (sendTyped({ type: "rooms" }, input)) line("info", [null, "rooms: see the list on the left"]);
      break;
    case "who":
      if (sendTyped({ type: "who" }, input)) line("info", [null, "who: see the list on the left"]);
      break;
    case "nick":
      if (args) sendTyped({ type: "nick", username: args }, input);
      else line("error", [null, "usage: /nick NAME"]);
      break;
    case "msg": {
      const space = args.indexOf(" ");
      if (space < 1) { line("error", [null, "usage: /msg NAME TEXT"]); break; }
      const to = args.slice(0, space), text = args.slice(space + 1).trim();
      if (sendTyped({ type: "private", to: to, message: text }, input)) {
        line("private mine", ["who", `[to ${to}] `], [null, text]);
      }
      break;
    }
    case "me":
      if (!args) { line("error", [null, "usage: /me ACTION"]); break; }
      if (sendTyped({ type: "action", message: args }, input)) {
        line("action mine", [null, `* ${me} ${args}`]);
      }
      break;
    case "help": line("info", [null, HELP]); break;
    case "quit": if (socket) socket.close(1000, "bye"); break;
    default: line("error", [null, `unknown command /${verb} (/help lists the commands)`]);
  }
}

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  const name = $("name").value.trim();
  if (!name) return;
  $("login-error").textContent = "";
  pendingName = name;
  if (!socket) connect();
  else send({ type: "join", room: room, username: name });
});

$("say").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = $("text").value;
  $("text").value = "";
  if (!input.trim()) return;
  if (input.startsWith("/")) return command(input);
  if (sendTyped({ type: "chat", message: input }, input)) {
    line("chat mine", ["who", `${me}: `], [null, input]);
  }
});

// The room list's counts change with every join anywhere: refreshed now
// and then rather than on every notification.
setInterval(() => { if (joined) send({ type: "rooms" }); }, 15000);

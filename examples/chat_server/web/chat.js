// The chat page's client: one WebSocket to /ws carrying the chat's NDJSON
// messages, one JSON object per text message. Everything the server sends
// is shown with textContent, never parsed as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
let socket = null;
let me = null;        // the name asked for, then the name we have
let joined = false;   // the first join succeeded
let room = "lobby";
let pendingName = null;

function send(object) {
  if (socket && socket.readyState === WebSocket.OPEN) {
    socket.send(JSON.stringify(object));
  }
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
    if (key !== undefined && current !== undefined &&
        key.toLowerCase() === current.toLowerCase()) item.className = "current";
    if (onClick) item.addEventListener("click", () => onClick(key));
    list.appendChild(item);
  }
}

function refresh() {
  send({ type: "who" });
  send({ type: "rooms" });
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  socket = new WebSocket(scheme + location.host + "/ws");
  setStatus("connecting");
  socket.addEventListener("open", () => setStatus("connected"));
  socket.addEventListener("message", (event) => {
    let message;
    try { message = JSON.parse(event.data); } catch { return; }
    receive(message);
  });
  socket.addEventListener("close", (event) => {
    const why = event.reason ? `: ${event.reason}` : "";
    setStatus(`disconnected (${event.code}${why})`);
    if (joined) line("error", [null, `connection closed (${event.code}${why})`]);
    else $("login-error").textContent = `connection closed (${event.code}${why})`;
    socket = null;
  });
}

function receive(message) {
  const text = typeof message.message === "string" ? message.message : "";
  switch (message.type) {
    case "welcome":
      if (pendingName) send({ type: "join", room: room, username: pendingName });
      break;
    case "notification": {
      const entered = /^(\S+) joined (\S+)$/.exec(text);
      const renamed = /^(\S+) is now known as (\S+)$/.exec(text);
      if (entered && pendingName && entered[1].toLowerCase() === pendingName.toLowerCase()) {
        me = entered[1];
        room = entered[2];
        pendingName = null;
        if (!joined) {
          joined = true;
          $("login").hidden = true;
          $("chat").hidden = false;
          $("text").focus();
        }
      } else if (entered && me && entered[1].toLowerCase() === me.toLowerCase()) {
        room = entered[2];
      }
      if (renamed && me && renamed[1].toLowerCase() === me.toLowerCase()) me = renamed[2];
      $("room-name").textContent = room;
      setStatus(`connected as ${me || "?"}`);
      line("notice", [null, text]);
      refresh();
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
        fillList($("users"), message.users.map((u) => [String(u)]));
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
      if (args) send({ type: "join", room: args, username: me });
      else line("error", [null, "usage: /join ROOM"]);
      break;
    case "leave": send({ type: "leave" }); break;
    case "rooms": send({ type: "rooms" }); line("info", [null, "rooms: see the list on the left"]); break;
    case "who": send({ type: "who" }); line("info", [null, "who: see the list on the left"]); break;
    case "nick":
      if (args) send({ type: "nick", username: args });
      else line("error", [null, "usage: /nick NAME"]);
      break;
    case "msg": {
      const space = args.indexOf(" ");
      if (space < 1) { line("error", [null, "usage: /msg NAME TEXT"]); break; }
      const to = args.slice(0, space), text = args.slice(space + 1).trim();
      send({ type: "private", to: to, message: text });
      line("private mine", ["who", `[to ${to}] `], [null, text]);
      break;
    }
    case "me":
      if (!args) { line("error", [null, "usage: /me ACTION"]); break; }
      send({ type: "action", message: args });
      line("action mine", [null, `* ${me} ${args}`]);
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
  send({ type: "chat", message: input });
  line("chat mine", ["who", `${me}: `], [null, input]);
});

setInterval(() => { if (joined) send({ type: "rooms" }); }, 15000);

//! The chat itself: users, names and rooms, shared by both protocols, and
//! the `Handler` that the connection layer calls. One thread owns all of it,
//! so there is no lock anywhere: a broadcast is a loop over a room's members
//! that queues one line to each, and the connection layer writes each
//! member's queue once before the loop sleeps.

use std::collections::HashMap;
use std::rc::Rc;

use log::{debug, info};
use reactor::codec::LineDecoder;
use reactor::service::ServiceHandle;

use crate::accounts::{Accounts, Check, Verifier};
#[path = "claims.rs"]
mod claims;
#[path = "cluster.rs"]
pub mod cluster;
use reactor::service::{CloseReason, ConnId, Connections, Handler, ListenerId, Origin};

use crate::protocol::{
    self, HELP, JSON_WELCOME, Notice, PROMPT, Proto, Request, check_name, fold, render,
};
use crate::text::Loggable;
use crate::web::{self, HttpOutcome, PingDue, WebConfig, WebConn};
use reactor::codec::websocket::{self as ws, Message, Opcode, close_code};

/// Every new user starts here; it exists even when empty.
pub const LOBBY: &str = "lobby";

pub struct Limits {
    pub max_rooms: usize,
    pub max_line: usize,
}

struct User {
    proto: Proto,
    /// Accepted on the TLS listener: may log in to a registered name.
    secure: bool,
    /// Logging in to a registered name.
    login: Option<Login>,
    /// The (folded) registered name this connection has given the password
    /// of: the one registered name it may take.
    verified: Option<String>,
    lines: LineDecoder,
    /// Set once the user has picked a name (line users: at the prompt; JSON
    /// users: with their first join).
    name: Option<Box<str>>,
    /// The folded name of the room the user is in, shared with the room's key.
    room: Option<Rc<str>>,
    /// Web users: HTTP until the upgrade, then the WebSocket's state.
    /// Taken out while a message is handled (so that the handling may
    /// borrow the whole chat), and put back after.
    web: Option<WebConn>,
}

/// A login under way: the name asked for, and how it is going.
struct Login {
    name: Box<str>,
    failures: u8,
    /// The password is being checked, or a failure's delay is running:
    /// reading is paused meanwhile.
    busy: bool,
}

/// Wrong passwords allowed on one connection before it is closed.
const MAX_FAILURES: u8 = 3;
/// How long a wrong password holds the next attempt back (others are served
/// meanwhile: only this connection's reading is paused).
const FAILURE_DELAY: std::time::Duration = std::time::Duration::from_secs(1);
const PASSWORD_PROMPT: &[u8] = b"Password: ";

struct Room {
    /// As its creator spelled it.
    name: Box<str>,
    members: Vec<ConnId>,
}

pub struct Chat {
    limits: Limits,
    json_listener: Option<ListenerId>,
    tls_listener: Option<ListenerId>,
    /// Registered names, with `--users`.
    accounts: Option<Accounts>,
    /// The password checker, with its handle back to this service.
    verifier: Option<(Verifier, ServiceHandle<Chat>)>,
    /// Indexed by `ConnId::index`: dense and small, so a vector beats a map.
    users: Vec<Option<User>>,
    /// Folded name to owner, across both protocols.
    names: HashMap<String, ConnId>,
    /// Folded room name to room.
    rooms: HashMap<Rc<str>, Room>,
    /// Scratch space for rendering a notice.
    line_out: Vec<u8>,
    /// With `--web-addr`: the web listeners and how they are run.
    web_listeners: Vec<ListenerId>,
    web: Option<WebConfig>,
    /// With `--redis`: the other nodes, through Redis (`cluster.rs`).
    cluster: Option<cluster::Cluster>,
}

impl Chat {
    pub fn new(limits: Limits) -> Chat {
        let mut rooms = HashMap::new();
        rooms.insert(
            Rc::from(LOBBY),
            Room {
                name: LOBBY.into(),
                members: Vec::new(),
            },
        );
        Chat {
            limits,
            json_listener: None,
            tls_listener: None,
            accounts: None,
            verifier: None,
            users: Vec::new(),
            names: HashMap::new(),
            rooms,
            line_out: Vec::new(),
            web_listeners: Vec::new(),
            web: None,
            cluster: None,
        }
    }

    /// Connections accepted on this listener are browsers: HTTP for the
    /// page, then a WebSocket.
    pub fn add_web_listener(&mut self, id: ListenerId, config: WebConfig) {
        self.web_listeners.push(id);
        self.web = Some(config);
    }

    /// Connections accepted on this listener are TLS: registered names may
    /// log in there.
    pub fn set_tls_listener(&mut self, id: ListenerId) {
        self.tls_listener = Some(id);
    }

    /// Turns accounts on: registered names need their password, over TLS.
    pub fn set_accounts(
        &mut self,
        accounts: Accounts,
        verifier: Verifier,
        me: ServiceHandle<Chat>,
    ) {
        self.accounts = Some(accounts);
        self.verifier = Some((verifier, me));
    }

    /// Why `name` may not be taken by `id` without logging in, if it is a
    /// registered name. (Web users cannot log in at all: a password is
    /// only ever typed on the TLS line listener.)
    fn registered(&self, id: ConnId, name: &str) -> Option<String> {
        self.accounts.as_ref().and_then(|a| a.hash_of(name))?;
        Some(match self.user(id).map(|u| u.proto) {
            Some(Proto::Web) => format!(
                "{name} is a registered name: its owner logs in with a line client over TLS; \
                 pick another name here"
            ),
            _ => format!("{name} is a registered name: log in over TLS to use it"),
        })
    }

    /// Connections accepted on this listener speak NDJSON.
    pub fn set_json_listener(&mut self, id: ListenerId) {
        self.json_listener = Some(id);
    }

    fn user(&self, id: ConnId) -> Option<&User> {
        self.users.get(id.index()).and_then(Option::as_ref)
    }

    fn user_mut(&mut self, id: ConnId) -> Option<&mut User> {
        self.users.get_mut(id.index()).and_then(Option::as_mut)
    }

    /// Tells one user something.
    fn tell(&mut self, conns: &mut Connections<'_>, id: ConnId, notice: Notice<'_>) {
        let Some(user) = self.user(id) else {
            return;
        };
        if matches!(user.web, Some(WebConn::Http)) {
            // Not a WebSocket (yet): a page request has no chat to be told.
            return;
        }
        let proto = user.proto;
        self.line_out.clear();
        render(&notice, proto, &mut self.line_out);
        // Fails only for a connection already closing: nothing to do.
        let _ = conns.send(id, &self.line_out);
    }

    /// Tells everyone in a room something, except `except`. The notice is
    /// rendered once per protocol and broadcast: stored once, queued for
    /// every member (consecutive broadcasts leave each member one
    /// contiguous write per turn).
    fn broadcast(
        &mut self,
        conns: &mut Connections<'_>,
        room: &str,
        notice: Notice<'_>,
        except: Option<ConnId>,
    ) {
        self.cluster_publish(conns, room, &notice);
        let Some(room) = self.rooms.get(room) else {
            return;
        };
        for proto in [Proto::Line, Proto::Json, Proto::Web] {
            let users = &self.users;
            let members = room.members.iter().copied().filter(|&m| {
                Some(m) != except
                    && users
                        .get(m.index())
                        .and_then(Option::as_ref)
                        .is_some_and(|u| u.proto == proto)
            });
            let mut members = members.peekable();
            if members.peek().is_none() {
                continue;
            }
            self.line_out.clear();
            render(&notice, proto, &mut self.line_out);
            // A member pushed over its output limit is closed by the service
            // (and leaves the room in on_close); the others are not held up.
            conns.broadcast(members, &self.line_out);
        }
    }

    /// Tells every connection the server is going down (before the service
    /// shuts down and flushes them).
    pub fn announce_shutdown(&mut self, conns: &mut Connections<'_>) {
        let ids: Vec<ConnId> = conns.ids().collect();
        for id in ids {
            self.tell(conns, id, Notice::ShuttingDown);
            self.close_ws(conns, id, close_code::GOING_AWAY, "server shutting down");
        }
    }

    // ----- names and rooms ----------------------------------------------

    /// Claims `name` for `id` (releasing its old name, if any).
    fn claim_name(&mut self, id: ConnId, name: &str) -> Result<(), String> {
        check_name(name, "name")?;
        let key = fold(name);
        let logged_in = self
            .user(id)
            .is_some_and(|u| u.verified.as_deref() == Some(key.as_str()));
        if !logged_in {
            if let Some(why) = self.registered(id, name) {
                return Err(why);
            }
        }
        match self.names.get(&key) {
            Some(&owner) if owner != id => return Err(format!("the name {name} is taken")),
            _ => {}
        }
        if let Some(old) = self.user(id).and_then(|u| u.name.as_deref()).map(fold) {
            self.names.remove(&old);
        }
        self.names.insert(key, id);
        if let Some(user) = self.user_mut(id) {
            user.name = Some(name.into());
        }
        Ok(())
    }

    fn release_name(&mut self, id: ConnId) {
        if let Some(name) = self.user_mut(id).and_then(|u| u.name.take()) {
            self.names.remove(&fold(&name));
        }
    }

    /// Moves a named user into `room_name` (creating it), telling the room
    /// it leaves and the room it enters.
    fn enter_room(
        &mut self,
        conns: &mut Connections<'_>,
        id: ConnId,
        room_name: &str,
    ) -> Result<(), String> {
        check_name(room_name, "room name")?;
        let key = fold(room_name);
        let Some(user) = self.user(id) else {
            return Ok(());
        };
        if user.room.as_deref() == Some(key.as_str()) {
            return Err(format!("you are already in {room_name}"));
        }
        if !self.rooms.contains_key(key.as_str()) && self.rooms.len() >= self.limits.max_rooms {
            return Err(format!(
                "too many rooms (the limit is {})",
                self.limits.max_rooms
            ));
        }
        self.leave_room(conns, id);
        let room_key: Rc<str> = match self.rooms.get_key_value(key.as_str()) {
            Some((existing, _)) => existing.clone(),
            None => {
                let fresh: Rc<str> = Rc::from(key.as_str());
                self.rooms.insert(
                    fresh.clone(),
                    Room {
                        name: room_name.into(),
                        members: Vec::new(),
                    },
                );
                fresh
            }
        };
        let name: Box<str> = self
            .user(id)
            .and_then(|u| u.name.clone())
            .unwrap_or_default();
        let display: Box<str> = self.rooms[&room_key].name.clone();
        self.cluster_entered(conns, id, &room_key, &display);
        self.broadcast(
            conns,
            &room_key,
            Notice::Joined {
                name: &name,
                room: &display,
            },
            None,
        );
        if let Some(room) = self.rooms.get_mut(&room_key) {
            room.members.push(id);
        }
        let proto = match self.user_mut(id) {
            Some(user) => {
                user.room = Some(room_key);
                user.proto
            }
            None => return Ok(()),
        };
        // The line user is welcomed; the JSON user sees its own join notice,
        // as everyone in the room does in the seed.
        let notice = match proto {
            Proto::Line => Notice::Welcome {
                name: &name,
                room: &display,
            },
            Proto::Json | Proto::Web => Notice::Joined {
                name: &name,
                room: &display,
            },
        };
        self.tell(conns, id, notice);
        info!("{name} joined {display}");
        Ok(())
    }

    /// Takes a user out of its room (if any), telling those who stay.
    fn leave_room(&mut self, conns: &mut Connections<'_>, id: ConnId) {
        let Some(user) = self.user_mut(id) else {
            return;
        };
        let Some(room_key) = user.room.take() else {
            return;
        };
        let name = user.name.clone().unwrap_or_default();
        let Some(room) = self.rooms.get_mut(&room_key) else {
            return;
        };
        room.members.retain(|&m| m != id);
        let display = room.name.clone();
        let empty = room.members.is_empty();
        self.cluster_left(conns, &room_key, &name);
        if empty && &*room_key != LOBBY {
            self.rooms.remove(&room_key);
            let left = Notice::Left {
                name: &name,
                room: &display,
            };
            self.cluster_publish(conns, &room_key, &left);
        } else {
            self.broadcast(
                conns,
                &room_key,
                Notice::Left {
                    name: &name,
                    room: &display,
                },
                None,
            );
        }
        info!("{name} left {display}");
    }

    fn room_of(&self, id: ConnId) -> Option<(Rc<str>, Box<str>, Box<str>)> {
        let user = self.user(id)?;
        let key = user.room.clone()?;
        let display = self.rooms.get(&key)?.name.clone();
        Some((key, display, user.name.clone()?))
    }

    // ----- what users do ------------------------------------------------

    fn say(&mut self, conns: &mut Connections<'_>, id: ConnId, text: &str, action: bool) {
        let Some((key, room, name)) = self.room_of(id) else {
            return self.tell(conns, id, Notice::Error("join a room first"));
        };
        debug!("{name} in {room}: {}", Loggable(text));
        let notice = if action {
            Notice::Action {
                name: &name,
                room: &room,
                text,
            }
        } else {
            Notice::Chat {
                name: &name,
                room: &room,
                text,
            }
        };
        self.broadcast(conns, &key, notice, Some(id));
    }

    fn private(&mut self, conns: &mut Connections<'_>, id: ConnId, to: &str, text: &str) {
        let Some(from) = self.user(id).and_then(|u| u.name.clone()) else {
            return self.tell(conns, id, Notice::Error("pick a name first (join a room)"));
        };
        match self.names.get(&fold(to)).copied() {
            Some(target) => {
                debug!("{from} to {}: {}", Loggable(to), Loggable(text));
                self.tell(conns, target, Notice::Private { from: &from, text });
            }
            None if self.cluster_private(conns, id, to, &from, text) => {}
            None => self.tell(conns, id, Notice::Error(&format!("no such user {to}"))),
        }
    }

    fn rename(&mut self, conns: &mut Connections<'_>, id: ConnId, new: &str) {
        let Some(old) = self.user(id).and_then(|u| u.name.clone()) else {
            return;
        };
        if let Err(e) = self.claim_name(id, new) {
            return self.tell(conns, id, Notice::Error(&e));
        }
        info!("{old} is now known as {new}");
        self.cluster_renamed(conns, id, &old, new);
        match self.room_of(id) {
            Some((key, _, _)) => {
                self.broadcast(conns, &key, Notice::Renamed { old: &old, new }, None)
            }
            None => self.tell(conns, id, Notice::Renamed { old: &old, new }),
        }
    }

    fn who(&mut self, conns: &mut Connections<'_>, id: ConnId) {
        if self.cluster_who(conns, id) {
            return;
        }
        let Some((key, display, _)) = self.room_of(id) else {
            return self.tell(conns, id, Notice::Error("join a room first"));
        };
        let names: Vec<String> = self.rooms[&key]
            .members
            .iter()
            .filter_map(|m| self.user(*m).and_then(|u| u.name.as_deref()))
            .map(str::to_string)
            .collect();
        self.tell_who(conns, id, &display, names);
        self.tell_cluster_note(conns, id);
    }

    fn list_rooms(&mut self, conns: &mut Connections<'_>, id: ConnId) {
        if self.cluster_rooms(conns, id) {
            return;
        }
        let rooms: Vec<(String, usize)> = self
            .rooms
            .values()
            .map(|r| (r.name.to_string(), r.members.len()))
            .collect();
        self.tell_rooms(conns, id, rooms.iter().map(|(n, c)| (n.as_str(), *c)));
        self.tell_cluster_note(conns, id);
    }

    /// `/who`'s answer, from this node's room or the cluster's: by name.
    fn tell_who(
        &mut self,
        conns: &mut Connections<'_>,
        id: ConnId,
        room: &str,
        mut names: Vec<String>,
    ) {
        names.sort_by_key(|n| n.to_lowercase());
        let users: Vec<&str> = names.iter().map(String::as_str).collect();
        self.tell(
            conns,
            id,
            Notice::Who {
                room,
                users: &users,
            },
        );
    }

    /// `/rooms`' answer, from this node's rooms or the cluster's.
    fn tell_rooms<'a>(
        &mut self,
        conns: &mut Connections<'_>,
        id: ConnId,
        rooms: impl Iterator<Item = (&'a str, usize)>,
    ) {
        let mut rooms: Vec<(&str, usize)> = rooms.collect();
        // Busiest first, then by name.
        rooms.sort_by(|a, b| {
            b.1.cmp(&a.1)
                .then_with(|| a.0.to_lowercase().cmp(&b.0.to_lowercase()))
        });
        self.tell(conns, id, Notice::Rooms(&rooms));
    }

    // ----- the line protocol --------------------------------------------

    fn line_input(&mut self, conns: &mut Connections<'_>, id: ConnId, text: &str) {
        if self.user(id).is_some_and(|u| u.login.is_some()) {
            return self.password_entered(conns, id, text);
        }
        let named = self.user(id).is_some_and(|u| u.name.is_some());
        if !named {
            return self.pick_name(conns, id, text.trim());
        }
        if let Some(command) = text.strip_prefix('/') {
            return self.command(conns, id, command.trim_end());
        }
        if !text.trim().is_empty() {
            self.say(conns, id, text, false);
        }
    }

    fn pick_name(&mut self, conns: &mut Connections<'_>, id: ConnId, name: &str) {
        if let Some(why) = self.registered(id, name) {
            let secure = self.user(id).is_some_and(|u| u.secure);
            if !secure {
                self.tell(conns, id, Notice::Error(&why));
                let _ = conns.send(id, PROMPT);
                return;
            }
            if let Some(user) = self.user_mut(id) {
                user.login = Some(Login {
                    name: name.into(),
                    failures: 0,
                    busy: false,
                });
            }
            let _ = conns.send(id, PASSWORD_PROMPT);
            return;
        }
        if let Err(e) = self.claim_name(id, name) {
            self.tell(conns, id, Notice::Error(&e));
            let _ = conns.send(id, PROMPT);
            return;
        }
        // The lobby always exists, so this cannot fail.
        let _ = self.enter_room(conns, id, LOBBY);
    }

    // ----- logging in -----------------------------------------------------

    fn login_mut(&mut self, id: ConnId) -> Option<&mut Login> {
        self.user_mut(id).and_then(|u| u.login.as_mut())
    }

    /// The password line of a login: to the checker, with reading paused
    /// until it answers.
    fn password_entered(&mut self, conns: &mut Connections<'_>, id: ConnId, password: &str) {
        let Some(login) = self
            .users
            .get_mut(id.index())
            .and_then(Option::as_mut)
            .and_then(|u| u.login.as_mut())
        else {
            return;
        };
        if login.busy {
            return;
        }
        let name = login.name.clone();
        let hash = self
            .accounts
            .as_ref()
            .and_then(|a| a.hash_of(&name))
            .map(str::to_string);
        let (Some(hash), Some((verifier, _))) = (hash, self.verifier.as_mut()) else {
            return;
        };
        login.busy = true;
        let _ = conns.pause_reading(id);
        verifier.submit(Check {
            id,
            name,
            password: password.to_string(),
            hash,
        });
    }

    /// The checker's answer for `id`'s login to `name` (called on the loop,
    /// through the service's handle).
    pub fn password_checked(
        &mut self,
        conns: &mut Connections<'_>,
        id: ConnId,
        name: &str,
        ok: bool,
    ) {
        if let Some((verifier, _)) = self.verifier.as_mut() {
            verifier.next();
        }
        let Some(user) = self.users.get_mut(id.index()).and_then(Option::as_mut) else {
            return;
        };
        let Some(login) = user.login.as_mut().filter(|l| &*l.name == name) else {
            return;
        };
        if !conns.is_open(id) {
            return;
        }
        if ok {
            user.login = None;
            user.verified = Some(fold(name));
            let _ = conns.resume_reading(id);
            info!("{name} logged in");
            if let Err(e) = self.claim_name(id, name) {
                self.tell(conns, id, Notice::Error(&e));
                let _ = conns.send(id, PROMPT);
                return;
            }
            let _ = self.enter_room(conns, id, LOBBY);
            return;
        }
        login.failures += 1;
        let failures = login.failures;
        info!("{id}: wrong password for {name} ({failures} of {MAX_FAILURES})");
        self.tell(conns, id, Notice::Error("wrong password"));
        if failures >= MAX_FAILURES {
            let _ = conns.close(id);
            return;
        }
        // The next attempt after a delay; reading stays paused until then.
        let Some((_, me)) = self.verifier.as_ref() else {
            return;
        };
        let me = me.clone();
        conns.reactor().call_later(FAILURE_DELAY, move |_| {
            let _ = me.call(move |chat, conns| chat.ask_password_again(conns, id));
        });
    }

    fn ask_password_again(&mut self, conns: &mut Connections<'_>, id: ConnId) {
        let Some(login) = self.login_mut(id) else {
            return;
        };
        login.busy = false;
        if conns.is_open(id) {
            let _ = conns.send(id, PASSWORD_PROMPT);
            let _ = conns.resume_reading(id);
        }
    }

    fn command(&mut self, conns: &mut Connections<'_>, id: ConnId, command: &str) {
        let (verb, args) = command.split_once(' ').unwrap_or((command, ""));
        let args = args.trim();
        match verb.to_ascii_lowercase().as_str() {
            "join" if !args.is_empty() => {
                if let Err(e) = self.enter_room(conns, id, args) {
                    self.tell(conns, id, Notice::Error(&e));
                }
            }
            "rooms" => self.list_rooms(conns, id),
            "who" => self.who(conns, id),
            "nick" if !args.is_empty() => self.rename(conns, id, args),
            "msg" => match args.split_once(' ') {
                Some((to, text)) if !text.trim().is_empty() => {
                    self.private(conns, id, to, text.trim_start())
                }
                _ => self.tell(conns, id, Notice::Error("usage: /msg NAME TEXT")),
            },
            "me" if !args.is_empty() => self.say(conns, id, args, true),
            "help" => self.tell(conns, id, Notice::Info(HELP)),
            "quit" => {
                self.tell(conns, id, Notice::Info("bye"));
                let _ = conns.close(id);
            }
            "join" | "nick" | "me" => {
                let what = match verb {
                    "me" => "ACTION",
                    "join" => "ROOM",
                    _ => "NAME",
                };
                let usage = format!("usage: /{verb} {what}");
                self.tell(conns, id, Notice::Error(&usage));
            }
            _ => {
                let e = format!("unknown command /{verb} (/help lists the commands)");
                self.tell(conns, id, Notice::Error(&e));
            }
        }
    }

    // ----- the JSON protocol --------------------------------------------

    fn json_input(&mut self, conns: &mut Connections<'_>, id: ConnId, line: &[u8]) {
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let request = match protocol::parse_request(line) {
            Ok(request) => request,
            Err(e) => return self.tell(conns, id, Notice::Error(&e)),
        };
        match request {
            Request::Join { room, username } => {
                let current = self.user(id).and_then(|u| u.name.clone());
                let result = match current {
                    Some(name) if fold(&name) != fold(&username) => Err(format!(
                        "you are {name}: a different username is not allowed"
                    )),
                    Some(_) => check_name(&room, "room name")
                        .and_then(|()| self.enter_room(conns, id, &room)),
                    None => check_name(&room, "room name")
                        .and_then(|()| self.claim_name(id, &username))
                        .and_then(|()| {
                            // A failed first join leaves the user nameless.
                            self.enter_room(conns, id, &room)
                                .inspect_err(|_| self.release_name(id))
                        }),
                };
                if let Err(e) = result {
                    self.tell(conns, id, Notice::Error(&e));
                }
            }
            Request::Chat { message } => self.say(conns, id, &message, false),
            Request::Action { message } => self.say(conns, id, &message, true),
            Request::Private { to, message } => self.private(conns, id, &to, &message),
            Request::Rooms => self.list_rooms(conns, id),
            Request::Who => self.who(conns, id),
            Request::Nick { username } => match self.user(id).and_then(|u| u.name.clone()) {
                Some(_) => self.rename(conns, id, &username),
                None => self.tell(conns, id, Notice::Error("pick a name first (join a room)")),
            },
            Request::Leave => match self.room_of(id) {
                None => self.tell(conns, id, Notice::Error("you are not in a room")),
                Some((_, room, name)) => {
                    self.leave_room(conns, id);
                    // The leaver's confirmation: its own notice.
                    self.tell(
                        conns,
                        id,
                        Notice::Left {
                            name: &name,
                            room: &room,
                        },
                    );
                }
            },
        }
    }
}

// ----- the web protocol ------------------------------------------------

impl Chat {
    /// A web connection's input: HTTP requests until the upgrade, then
    /// WebSocket frames, each text message handled as an NDJSON line.
    fn web_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
        let (Some(mut conn), Some(config)) = (
            self.user_mut(id).and_then(|u| u.web.take()),
            self.web.as_ref(),
        ) else {
            return data.len();
        };
        let mut pos = 0;
        if let WebConn::Http = conn {
            match web::serve_http(conns, id, data, config) {
                HttpOutcome::Served(used) => {
                    self.put_web_back(id, conn);
                    return used;
                }
                HttpOutcome::Upgraded(used, socket) => {
                    pos = used;
                    conn = WebConn::Ws(socket);
                    // The NDJSON welcome, and the page's one extra: the
                    // largest message it may send (over it: close 1009).
                    let mut out = Vec::new();
                    protocol::object(&mut out, "welcome", &[("message", JSON_WELCOME)]);
                    out.pop();
                    out.extend_from_slice(
                        format!(",\"max_message\":{}}}", config.max_message).as_bytes(),
                    );
                    protocol::frame_text(&mut out, 0);
                    let _ = conns.send(id, &out);
                    // As for a JSON user: the first join must come within
                    // the line timeout.
                    let _ = conns.expect_message(id);
                }
            }
        }
        let WebConn::Ws(socket) = &mut conn else {
            return data.len();
        };
        if pos < data.len() {
            socket.last_heard = conns.reactor().now();
        }
        while conns.is_open(id) && !socket.closing {
            let message = match socket.decoder.decode(&data[pos..]) {
                Ok((used, message)) => {
                    pos += used;
                    match message {
                        Some(message) => message,
                        None => break,
                    }
                }
                Err(e) => {
                    info!("{id}: WebSocket error: {e}");
                    socket.close(conns, id, e.code, e.reason);
                    break;
                }
            };
            match message {
                // A message that takes a new name waits for the cluster
                // (kept by it, since a WebSocket message cannot be left
                // unread the way a line is).
                Message::Text(text) => match self.name_gate(conns, id, Proto::Web, text.as_bytes())
                {
                    claims::Gate::Wait => {
                        self.hold_message(id, text);
                        break;
                    }
                    claims::Gate::Refused => {}
                    claims::Gate::Go => self.json_input(conns, id, text.as_bytes()),
                },
                Message::Binary(_) => {
                    debug!("{id}: a binary message");
                    socket.close(conns, id, close_code::UNSUPPORTED, "text messages only");
                }
                Message::Ping(payload) => {
                    let mut pong = Vec::with_capacity(2 + payload.len());
                    ws::write_frame(&mut pong, Opcode::Pong, payload, None);
                    let _ = conns.send(id, &pong);
                }
                Message::Pong(_) => socket.ping_sent = None,
                Message::Close(code, _) => {
                    debug!("{id}: WebSocket close {code:?}");
                    socket.close(conns, id, code.unwrap_or(close_code::NORMAL), "");
                }
            }
        }
        // Inside a frame or a fragmented message, or still without a
        // name: as for a line not finished, the line timeout keeps running
        // (pings, pongs and refused joins do not stop it).
        let unfinished = !socket.decoder.is_idle();
        self.put_web_back(id, conn);
        if unfinished || self.user(id).is_some_and(|u| u.name.is_none()) {
            let _ = conns.expect_message(id);
        }
        if conns.is_open(id) { pos } else { data.len() }
    }

    fn put_web_back(&mut self, id: ConnId, conn: WebConn) {
        if let Some(user) = self.user_mut(id) {
            user.web = Some(conn);
        }
    }

    /// Sends a WebSocket user a close frame and closes it (others: nothing).
    fn close_ws(&mut self, conns: &mut Connections<'_>, id: ConnId, code: u16, reason: &str) {
        if let Some(WebConn::Ws(socket)) = self.user_mut(id).and_then(|u| u.web.as_mut()) {
            socket.close(conns, id, code, reason);
        }
    }

    /// The ping clock (called every [`WebConfig::sweep_period`]): pings the
    /// WebSocket users silent for `--ws-ping`, and closes those whose pong
    /// is overdue.
    pub fn web_sweep(&mut self, conns: &mut Connections<'_>) {
        let Some(config) = self.web.as_ref() else {
            return;
        };
        let now = conns.reactor().now();
        for user in self.users.iter_mut().flatten() {
            let Some(WebConn::Ws(socket)) = user.web.as_mut() else {
                continue;
            };
            if socket.closing {
                continue;
            }
            let id = socket.id;
            match socket.ping_due(config, now) {
                PingDue::Nothing => {}
                PingDue::Ping => {
                    let mut ping = Vec::with_capacity(2);
                    ws::write_frame(&mut ping, Opcode::Ping, b"", None);
                    let _ = conns.send(id, &ping);
                    socket.ping_sent = Some(now);
                }
                PingDue::Close => {
                    info!("{id}: no pong within {:?}: closing", config.pong_timeout);
                    socket.close(conns, id, close_code::GOING_AWAY, "no pong");
                }
            }
        }
    }
}

impl Handler for Chat {
    fn on_open(&mut self, conns: &mut Connections<'_>, id: ConnId, origin: Origin) {
        if self.cluster_open(conns, id) {
            return;
        }
        let proto = match origin {
            Origin::Accepted(listener) if Some(listener) == self.json_listener => Proto::Json,
            Origin::Accepted(listener) if self.web_listeners.contains(&listener) => Proto::Web,
            _ => Proto::Line,
        };
        if self.users.len() <= id.index() {
            self.users.resize_with(id.index() + 1, || None);
        }
        let secure = matches!(origin, Origin::Accepted(l) if Some(l) == self.tls_listener);
        self.users[id.index()] = Some(User {
            proto,
            secure,
            login: None,
            verified: None,
            lines: LineDecoder::new(self.limits.max_line),
            name: None,
            room: None,
            web: (proto == Proto::Web).then_some(WebConn::Http),
        });
        // The name is the first message: it must come within the line
        // timeout of connecting.
        let _ = conns.expect_message(id);
        match proto {
            Proto::Line => {
                let _ = conns.send(id, PROMPT);
            }
            Proto::Json => {
                let mut out = Vec::new();
                protocol::object(&mut out, "welcome", &[("message", JSON_WELCOME)]);
                out.push(b'\n');
                let _ = conns.send(id, &out);
            }
            // The page, or the upgrade, is asked for first.
            Proto::Web => {}
        }
    }

    fn on_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
        if let Some(used) = self.cluster_data(conns, id, data) {
            return used;
        }
        if self.user(id).is_some_and(|u| u.proto == Proto::Web) {
            return self.web_data(conns, id, data);
        }
        let mut pos = 0;
        loop {
            let Some(user) = self.user_mut(id) else {
                return data.len();
            };
            let proto = user.proto;
            let start = pos;
            let Some(line) = user.lines.next_line(data, &mut pos) else {
                break;
            };
            // A line that takes a new name waits (unread) for the cluster.
            if let Ok(bytes) = &line {
                match self.name_gate(conns, id, proto, bytes) {
                    claims::Gate::Wait => {
                        pos = start;
                        break;
                    }
                    claims::Gate::Refused => continue,
                    claims::Gate::Go => {}
                }
            }
            match line {
                Err(too_long) => {
                    let e = too_long.to_string();
                    debug!("{id}: {e}");
                    self.tell(conns, id, Notice::Error(&e));
                    if proto == Proto::Line && self.user(id).is_some_and(|u| u.name.is_none()) {
                        let _ = conns.send(id, PROMPT);
                    }
                }
                Ok(bytes) => match proto {
                    Proto::Json | Proto::Web => self.json_input(conns, id, bytes),
                    Proto::Line => match std::str::from_utf8(bytes) {
                        Ok(text) => self.line_input(conns, id, text),
                        Err(_) => {
                            self.tell(
                                conns,
                                id,
                                Notice::Error("invalid UTF-8: lines must be UTF-8 text"),
                            );
                            if self.user(id).is_some_and(|u| u.name.is_none()) {
                                let _ = conns.send(id, PROMPT);
                            }
                        }
                    },
                },
            }
            if !conns.is_open(id) {
                // `/quit`: whatever follows is not read.
                return data.len();
            }
            if self
                .user(id)
                .and_then(|u| u.login.as_ref())
                .is_some_and(|l| l.busy)
            {
                // A password is being checked, and reading is paused: what
                // came after it waits, unconsumed, and is handed back when
                // reading resumes (after the check, or the failure's delay).
                break;
            }
        }
        // Still waiting for a name, or inside an overlong line whose bytes
        // the decoder consumes: the line timeout keeps running.
        if self
            .user(id)
            .is_some_and(|u| u.name.is_none() || u.lines.in_overlong_line())
        {
            let _ = conns.expect_message(id);
        }
        pos
    }

    fn on_input_timeout(&mut self, conns: &mut Connections<'_>, id: ConnId) {
        if matches!(
            self.user(id).and_then(|u| u.web.as_ref()),
            Some(WebConn::Http)
        ) {
            // A page connection idle past the timeout, or a request that
            // never finished: closed without a word.
            return;
        }
        // One error, then the service closes gracefully (the error is sent,
        // then FIN; what the client still sends is read and discarded).
        let after = conns
            .config()
            .get_unfinished_input_timeout()
            .map_or_else(String::new, |t| format!(" within {}", human_duration(t)));
        let what = match self.user(id) {
            Some(user) if user.name.is_none() => "no name given",
            _ => "line not finished",
        };
        self.tell(
            conns,
            id,
            Notice::Error(&format!("{what}{after}: disconnecting")),
        );
        self.close_ws(conns, id, close_code::POLICY, what);
    }

    fn on_read_closed(&mut self, conns: &mut Connections<'_>, id: ConnId) {
        // The client hung up its sending side: like /quit, without the reply.
        let _ = conns.close(id);
    }

    fn on_drained(&mut self, conns: &mut Connections<'_>, id: ConnId) {
        self.cluster_drained(conns, id);
    }

    fn on_close(&mut self, conns: &mut Connections<'_>, id: ConnId, reason: &CloseReason) {
        if self.cluster_closed(conns, id, reason) {
            return;
        }
        if let Some((verifier, _)) = self.verifier.as_mut() {
            verifier.forget(id);
        }
        self.leave_room(conns, id);
        let Some(user) = self.users.get_mut(id.index()).and_then(Option::take) else {
            return;
        };
        match &user.name {
            Some(name) => {
                self.names.remove(&fold(name));
                self.cluster_gone(conns, name);
                info!("{name} disconnected ({reason})");
            }
            None => debug!("{id} disconnected before picking a name ({reason})"),
        }
    }
}

/// A duration as a person writes it: `30s`, `1.5s`, `250ms`.
fn human_duration(d: std::time::Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else if d.as_secs() == 0 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

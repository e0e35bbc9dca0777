//! Names across the cluster: each is claimed in Redis, case-folded, with
//! `SET chat:name:NAME NODE NX GET PX TTL`, and refreshed by a timer.
//!
//! - **A new name waits for Redis, at most 1 s.** The line that takes a
//!   name (the answer to the prompt, `/nick`, a JSON or WebSocket `join` or
//!   `nick`) is left unread (a WebSocket message: kept) and the connection
//!   paused while the claim is asked; the
//!   answer comes, or the second passes, and the line is read again and
//!   runs as it would on a lone server (or is refused: the name is taken
//!   on another node).
//! - **Redis away: names are accepted locally,** and claimed by the next
//!   refresh once it is back, which claims every local name again.
//! - **The split rule:** a name found held by another node at that point
//!   stays with the claim Redis already holds (the earlier one to reach
//!   Redis); the local user, the later claim, is renamed `NAME-2` (or
//!   `-3`, ...) and told.
//! - **Claims expire** `--redis-claim-ttl` after their node stops
//!   refreshing them (every third of it), and the node's presence with
//!   them: a dead node's users leave `/who` within that time. On SIGTERM a
//!   node releases its claims at once.

use std::time::{Duration, Instant};

use log::{info, warn};
use reactor::codec::resp::Value;
use reactor::service::{ConnId, Connections};
use serde_json::Value as Json;

use super::Chat;
use super::cluster::Tag;
use crate::protocol::{Notice, PROMPT, Proto, check_name, fold};

/// How long a new name waits for Redis's answer.
const CLAIM_WAIT: Duration = Duration::from_secs(1);

/// A claim asked for and not yet answered.
#[derive(Debug)]
pub struct Asking {
    key: String,
    display: String,
    deadline: Instant,
}

/// Redis's answer to a claim, kept until its line is read again.
#[derive(Debug)]
pub enum Answer {
    /// Ours (or no answer in time): the line runs.
    Go,
    /// Held by another node: the line is refused.
    Taken(String),
}

/// What to do with a line that may take a name.
#[derive(Debug, PartialEq, Eq)]
pub enum Gate {
    /// Run it.
    Go,
    /// Leave it unread: reading is paused until Redis answers.
    Wait,
    /// It was answered (the name is taken): consume it.
    Refused,
}

/// Lua for the refresh: `ARGV` = node, TTL in milliseconds, the number N of
/// names, N folded names, then the presence as pairs (user, "ROOMKEY Room").
/// Extends this node's claims, makes the ones Redis lost, returns those
/// another node holds, rewrites the node's presence, and scores the node
/// in `chat:nodes` with its expiry in milliseconds, the claims' own
/// (forgetting nodes whose time passed). `/who` leaves a node out from the
/// moment its claims expire, so a name that leaves `/who` is free; the
/// presence hash itself lives a second longer, unread by then.
const REFRESH_SCRIPT: &str = r#"
local node, ttl, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local lost = {}
for i = 4, 3 + n do
  local k = 'chat:name:' .. ARGV[i]
  local owner = redis.call('GET', k)
  if owner == node then redis.call('PEXPIRE', k, ttl)
  elseif not owner then redis.call('SET', k, node, 'PX', ttl)
  else lost[#lost + 1] = ARGV[i] end
end
-- The time after the claims', so that the node's expiry is never before
-- theirs.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + 1
local p = 'chat:presence:' .. node
redis.call('DEL', p)
for i = 4 + n, #ARGV, 2 do redis.call('HSET', p, ARGV[i], ARGV[i + 1]) end
redis.call('PEXPIRE', p, ttl + 1000)
redis.call('ZADD', 'chat:nodes', string.format('%.0f', now + ttl), node)
redis.call('ZREMRANGEBYSCORE', 'chat:nodes', '-inf', string.format('(%.0f', now))
return lost
"#;

/// Lua for releasing claims: `ARGV` = node, then folded names; each is
/// deleted only if this node holds it (never another node's claim).
const RELEASE_SCRIPT: &str = r#"
for i = 2, #ARGV do
  local k = 'chat:name:' .. ARGV[i]
  if redis.call('GET', k) == ARGV[1] then redis.call('DEL', k) end
end
return 0
"#;

impl Chat {
    /// Called for each complete line before it runs: a line that takes a
    /// new name waits for Redis's answer to its claim.
    pub(super) fn name_gate(
        &mut self,
        conns: &mut Connections<'_>,
        id: ConnId,
        proto: Proto,
        line: &[u8],
    ) -> Gate {
        let Some(cluster) = self.cluster.as_mut() else {
            return Gate::Go;
        };
        match cluster.answered.remove(&id) {
            Some(Answer::Go) => return Gate::Go,
            Some(Answer::Taken(name)) => {
                let unnamed = self.user(id).is_some_and(|u| u.name.is_none());
                self.tell(
                    conns,
                    id,
                    Notice::Error(&format!("the name {name} is taken")),
                );
                if unnamed && proto == Proto::Line {
                    let _ = conns.send(id, PROMPT);
                }
                return Gate::Refused;
            }
            None => {}
        }
        if cluster.asking.contains_key(&id) {
            return Gate::Wait;
        }
        if !cluster.up() {
            return Gate::Go; // accepted locally, claimed when Redis is back
        }
        let Some(wanted) = self.name_in_line(id, proto, line) else {
            return Gate::Go;
        };
        let key = fold(&wanted);
        let Some(cluster) = self.cluster.as_mut() else {
            return Gate::Go;
        };
        if check_name(&wanted, "name").is_err()
            || self.names.contains_key(&key)
            || cluster.held.contains(&key)
        {
            return Gate::Go; // the local rules answer it
        }
        let ttl = cluster.ttl.as_millis().to_string();
        let claim = format!("chat:name:{key}");
        let node = cluster.node.clone();
        let args = ["SET", &claim, &node, "NX", "GET", "PX", &ttl];
        let tag = Tag::Claim {
            id,
            key: key.clone(),
        };
        if cluster.redis.send(conns, &args, tag).is_err() {
            return Gate::Go;
        }
        cluster.asking.insert(
            id,
            Asking {
                key,
                display: wanted,
                deadline: Instant::now() + CLAIM_WAIT,
            },
        );
        let _ = conns.pause_reading(id);
        Gate::Wait
    }

    /// The name `line` would take for `id`, if it takes one.
    fn name_in_line(&self, id: ConnId, proto: Proto, line: &[u8]) -> Option<String> {
        let user = self.user(id)?;
        if user.login.is_some() {
            return None;
        }
        let current = user.name.as_deref().map(fold);
        let wanted = match proto {
            Proto::Json | Proto::Web => {
                let Ok(Json::Object(fields)) = serde_json::from_slice::<Json>(line) else {
                    return None;
                };
                let kind = fields.get("type").and_then(Json::as_str)?;
                let name = fields.get("username").and_then(Json::as_str)?;
                // Only a line that takes the name if the claim succeeds:
                // claiming for one the local rules then refuse would let
                // anyone hold names across the cluster without a user.
                let room = fields.get("room").and_then(Json::as_str);
                match kind {
                    "join"
                        if current.is_none()
                            && room.is_some_and(|r| check_name(r, "room name").is_ok()) =>
                    {
                        name.to_string()
                    }
                    "nick" if current.is_some() => name.to_string(),
                    _ => return None,
                }
            }
            Proto::Line => {
                let text = std::str::from_utf8(line).ok()?;
                if current.is_none() {
                    text.trim().to_string()
                } else {
                    let (verb, args) = text.strip_prefix('/')?.split_once(' ')?;
                    if !verb.eq_ignore_ascii_case("nick") {
                        return None;
                    }
                    args.trim().to_string()
                }
            }
        };
        // A registered name goes to the password prompt, not to a claim.
        if self.registered(id, &wanted).is_some() {
            return None;
        }
        (current.as_deref() != Some(fold(&wanted).as_str()) && !wanted.is_empty()).then_some(wanted)
    }

    /// Redis answered the claim of `key` for `id` (`None`: it never will).
    pub(super) fn claim_answered(
        &mut self,
        conns: &mut Connections<'_>,
        id: ConnId,
        key: String,
        value: Option<Value>,
    ) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let ours = match &value {
            Some(Value::Null) => true,
            Some(Value::Bulk(owner)) => owner == cluster.node.as_bytes(),
            // An error (a Redis without SET ... NX GET, before 7.0) or no
            // answer: accepted, as when Redis is away.
            _ => false,
        };
        if ours {
            cluster.held.insert(key.clone());
        }
        let mine = cluster.asking.get(&id).is_some_and(|a| a.key == key);
        if !mine {
            return; // answered too late: the line already ran
        }
        let asked = cluster.asking.remove(&id);
        let answer = match value {
            Some(Value::Bulk(_)) if !ours => Answer::Taken(asked.map(|a| a.display).unwrap_or(key)),
            _ => Answer::Go,
        };
        cluster.answered.insert(id, answer);
        let _ = conns.resume_reading(id);
        self.run_held_message(conns, id);
    }

    /// A WebSocket message that waits for its claim's answer: a line waits
    /// unread in the connection's input, but a message is cut from its
    /// frames by then, so the cluster keeps it.
    pub(super) fn hold_message(&mut self, id: ConnId, text: &str) {
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.held_messages.insert(id, text.to_string());
        }
    }

    /// The answer has come: the held message runs (or is refused).
    fn run_held_message(&mut self, conns: &mut Connections<'_>, id: ConnId) {
        let Some(text) = self
            .cluster
            .as_mut()
            .and_then(|c| c.held_messages.remove(&id))
        else {
            return;
        };
        if self.name_gate(conns, id, Proto::Web, text.as_bytes()) == Gate::Go {
            self.json_input(conns, id, text.as_bytes());
        }
    }

    /// Claims that waited too long, and the periodic refresh.
    pub(super) fn claims_tick(&mut self, conns: &mut Connections<'_>, now: Instant) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let late: Vec<ConnId> = cluster
            .asking
            .iter()
            .filter(|(_, a)| a.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            if let Some(cluster) = self.cluster.as_mut() {
                if let Some(asked) = cluster.asking.remove(&id) {
                    warn!(
                        "cluster: no answer from Redis for the name {} within 1s: accepted locally",
                        asked.display
                    );
                }
                cluster.answered.insert(id, Answer::Go);
            }
            let _ = conns.resume_reading(id);
            self.run_held_message(conns, id);
        }
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        if !cluster.up() || now < cluster.next_refresh {
            return;
        }
        cluster.next_refresh = now + cluster.ttl / 3;
        // Names held in Redis that no local user has any more.
        let stale: Vec<String> = cluster
            .held
            .iter()
            .filter(|k| !self.names.contains_key(*k))
            .filter(|k| !cluster.asking.values().any(|a| &a.key == *k))
            .cloned()
            .collect();
        if !stale.is_empty() {
            for key in &stale {
                cluster.held.remove(key);
            }
            let mut args = vec!["EVAL", RELEASE_SCRIPT, "0", cluster.node.as_str()];
            args.extend(stale.iter().map(String::as_str));
            let _ = cluster.redis.send(conns, &args, Tag::Quiet);
        }
        let ttl = cluster.ttl.as_millis().to_string();
        let count = self.names.len().to_string();
        let mut args: Vec<&str> = vec!["EVAL", REFRESH_SCRIPT, "0", &cluster.node, &ttl, &count];
        args.extend(self.names.keys().map(String::as_str));
        let presence: Vec<(&str, String)> = self
            .users
            .iter()
            .flatten()
            .filter_map(|u| {
                let name = u.name.as_deref()?;
                let room = u.room.as_ref()?;
                let display = self.rooms.get(room)?.name.as_ref();
                Some((name, format!("{room} {display}")))
            })
            .collect();
        for (name, value) in &presence {
            args.push(name);
            args.push(value);
        }
        let _ = cluster.redis.send(conns, &args, Tag::Refresh);
        // The node's id, held with this process's token: another process
        // started with the same --node-id finds someone else's token (the
        // two would take each other's messages for their own).
        let key = format!("chat:node:{}", cluster.node);
        let args = ["SET", &key, &cluster.token, "NX", "GET", "PX", &ttl];
        let _ = cluster.redis.send(conns, &args, Tag::NodeId);
    }

    /// The refresh's answer: the local names another node holds. Each such
    /// user, the later claim, is renamed and told (the split rule).
    pub(super) fn refresh_answered(&mut self, conns: &mut Connections<'_>, value: Value) {
        let lost: Vec<String> = match value {
            Value::Array(items) => items
                .iter()
                .filter_map(Value::as_bytes)
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .collect(),
            _ => return,
        };
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        cluster
            .held
            .extend(self.names.keys().filter(|k| !lost.contains(k)).cloned());
        for key in &lost {
            cluster.held.remove(key);
        }
        for key in lost {
            let Some(id) = self.names.get(&key).copied() else {
                continue;
            };
            let Some(old) = self.user(id).and_then(|u| u.name.clone()) else {
                continue;
            };
            let base: String = old.chars().take(29).collect();
            let Some(new) = (2..1000)
                .map(|n| format!("{base}-{n}"))
                .find(|n| !self.names.contains_key(&fold(n)))
            else {
                continue;
            };
            warn!("cluster: the name {old} is held by another node: renaming our user to {new}");
            let why = format!(
                "the name {old} was also claimed on another node while the cluster was split; \
                 the earlier claim keeps it, and you are now {new}"
            );
            self.tell(conns, id, Notice::Info(&why));
            self.rename(conns, id, &new);
            // Claim the new name soon.
            if let Some(cluster) = self.cluster.as_mut() {
                cluster.next_refresh = Instant::now();
            }
        }
    }

    /// `id` was renamed from `old` to `new` (locally done): the claim of
    /// `old` is released, the private channel and the presence follow.
    pub(super) fn cluster_renamed(
        &mut self,
        conns: &mut Connections<'_>,
        id: ConnId,
        old: &str,
        new: &str,
    ) {
        let room = self.room_of(id);
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let (old_key, new_key) = (fold(old), fold(new));
        cluster
            .subscriber
            .unsubscribe(conns, format!("chat:user:{old_key}").as_bytes());
        cluster
            .subscriber
            .subscribe(conns, format!("chat:user:{new_key}").as_bytes());
        if !cluster.up() {
            return;
        }
        if cluster.held.remove(&old_key) {
            let args = ["EVAL", RELEASE_SCRIPT, "0", cluster.node.as_str(), &old_key];
            let _ = cluster.redis.send(conns, &args, Tag::Quiet);
        }
        let presence = format!("chat:presence:{}", cluster.node);
        let _ = cluster
            .redis
            .send(conns, &["HDEL", &presence, old], Tag::Quiet);
        if let Some((key, display, _)) = room {
            let value = format!("{key} {display}");
            let _ = cluster
                .redis
                .send(conns, &["HSET", &presence, new, &value], Tag::Quiet);
        }
    }

    /// A named user is gone: its claim is released and its channel dropped.
    pub(super) fn cluster_gone(&mut self, conns: &mut Connections<'_>, name: &str) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let key = fold(name);
        cluster
            .subscriber
            .unsubscribe(conns, format!("chat:user:{key}").as_bytes());
        if cluster.up() && cluster.held.remove(&key) {
            let args = ["EVAL", RELEASE_SCRIPT, "0", cluster.node.as_str(), &key];
            let _ = cluster.redis.send(conns, &args, Tag::Quiet);
        }
    }

    /// SIGTERM: every claim released and the presence removed, before the
    /// connections are flushed and closed.
    pub fn cluster_shutdown(&mut self, conns: &mut Connections<'_>) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        if !cluster.up() {
            cluster.redis.close(conns);
            cluster.subscriber.close(conns);
            return;
        }
        let mut args = vec!["EVAL", RELEASE_SCRIPT, "0", cluster.node.as_str()];
        args.extend(cluster.held.iter().map(String::as_str));
        let _ = cluster.redis.send(conns, &args, Tag::Quiet);
        let presence = format!("chat:presence:{}", cluster.node);
        let _ = cluster.redis.send(conns, &["DEL", &presence], Tag::Quiet);
        let _ = cluster
            .redis
            .send(conns, &["ZREM", "chat:nodes", &cluster.node], Tag::Quiet);
        info!("cluster: released {} name claim(s)", cluster.held.len());
        cluster.held.clear();
        // No reconnecting while the service shuts down.
        cluster.redis.close(conns);
        cluster.subscriber.close(conns);
    }
}

//! `INFO`: the sections and field names that tools parse (`redis-cli`,
//! monitoring agents, client libraries' `info()`), in Redis's layout:
//! `# Section` lines, then `field:value` lines, `\r\n` line ends.

use std::fmt::Write;

use reactor::service::Connections;

use crate::REDIS_VERSION;
use crate::replication::LinkState;
use crate::server::{Kv, Role};

const SECTIONS: [&str; 6] = [
    "server",
    "clients",
    "memory",
    "stats",
    "replication",
    "keyspace",
];

/// `used_memory_rss` from `/proc/self/statm`, in bytes (0 elsewhere).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

fn human(bytes: usize) -> String {
    let b = bytes as f64;
    if b >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2}G", b / (1024.0 * 1024.0 * 1024.0))
    } else if b >= 1024.0 * 1024.0 {
        format!("{:.2}M", b / (1024.0 * 1024.0))
    } else if b >= 1024.0 {
        format!("{:.2}K", b / 1024.0)
    } else {
        format!("{bytes}B")
    }
}

impl Kv {
    /// The text of `INFO [section]` (`all`, `everything` or none: all).
    pub fn info(&self, conns: &Connections<'_>, section: Option<&[u8]>) -> String {
        let wanted = section.map(|s| String::from_utf8_lossy(s).to_ascii_lowercase());
        let all = wanted
            .as_deref()
            .is_none_or(|w| w == "all" || w == "everything" || w == "default");
        let mut text = String::new();
        for name in SECTIONS {
            if !all && wanted.as_deref() != Some(name) {
                continue;
            }
            if !text.is_empty() {
                text.push_str("\r\n");
            }
            let _ = writeln!(text, "# {}\r", capitalise(name));
            self.section(conns, name, &mut text);
        }
        text
    }

    fn section(&self, conns: &Connections<'_>, name: &str, t: &mut String) {
        let mut field = |k: &str, v: &dyn std::fmt::Display| {
            let _ = write!(t, "{k}:{v}\r\n");
        };
        match name {
            "server" => {
                field("redis_version", &REDIS_VERSION);
                field("redis_mode", &"standalone");
                field("server_name", &"kv_server (reactor)");
                field("multiplexing_api", &"epoll (mio)");
                field("process_id", &std::process::id());
                field("tcp_port", &self.settings.port);
                field("uptime_in_seconds", &self.started.elapsed().as_secs());
                field(
                    "uptime_in_days",
                    &(self.started.elapsed().as_secs() / 86400),
                );
                field("hz", &10);
            }
            "clients" => {
                let normal = self
                    .clients
                    .iter()
                    .flatten()
                    .filter(|c| c.role == Role::Normal)
                    .count();
                // The client asking is out of the table while it is served.
                field("connected_clients", &(normal + 1).min(conns.len()));
                field("maxclients", &self.settings.max_clients);
                field(
                    "blocked_clients",
                    &self.clients.iter().flatten().filter(|c| c.blocked).count(),
                );
            }
            "memory" => {
                field("used_memory", &self.db.used);
                field("used_memory_human", &human(self.db.used));
                field("used_memory_rss", &rss_bytes());
                field("used_memory_dataset", &self.db.used);
                field("maxmemory", &self.settings.maxmemory);
                field("maxmemory_human", &human(self.settings.maxmemory));
                field("maxmemory_policy", &self.settings.policy.name());
            }
            "stats" => {
                field("total_connections_received", &self.total_connections);
                field("total_commands_processed", &self.total_commands);
                field("rejected_connections", &conns.stats().rejected);
                field("expired_keys", &self.db.expired_keys);
                field("evicted_keys", &self.db.evicted_keys);
                field("keyspace_hits", &self.db.hits);
                field("keyspace_misses", &self.db.misses);
                field("sync_full", &self.sync_full);
                field("sync_partial_ok", &self.sync_partial_ok);
            }
            "replication" => self.replication_section(conns, t),
            "keyspace" if self.db.len() > 0 => {
                let _ = write!(
                    t,
                    "db0:keys={},expires={},avg_ttl=0\r\n",
                    self.db.len(),
                    self.db.expires_len()
                );
            }
            _ => {}
        }
    }

    fn replication_section(&self, conns: &Connections<'_>, t: &mut String) {
        let mut field = |k: &str, v: &dyn std::fmt::Display| {
            let _ = write!(t, "{k}:{v}\r\n");
        };
        match &self.upstream {
            Some(up) => {
                field("role", &"slave");
                field("master_host", &up.addr.ip());
                field("master_port", &up.addr.port());
                let status = if up.state == LinkState::Online {
                    "up"
                } else {
                    "down"
                };
                field("master_link_status", &status);
                field(
                    "master_sync_in_progress",
                    &i32::from(matches!(up.state, LinkState::Snapshot { .. })),
                );
                field("slave_repl_offset", &self.offset);
                field("slave_read_only", &1);
                field("connected_slaves", &0);
            }
            None => {
                field("role", &"master");
                let replicas: Vec<(u16, u64, String)> = self
                    .replica_ids(conns)
                    .into_iter()
                    .filter_map(|id| {
                        let c = self.clients.get(id.index())?.as_ref()?;
                        let Role::Replica { ack, port } = c.role else {
                            return None;
                        };
                        let ip = conns
                            .peer_addr(id)
                            .ok()
                            .and_then(|a| a.inet())
                            .map_or_else(|| "?".to_string(), |a| a.ip().to_string());
                        Some((port, ack, ip))
                    })
                    .collect();
                field("connected_slaves", &replicas.len());
                for (i, (port, ack, ip)) in replicas.iter().enumerate() {
                    field(
                        &format!("slave{i}"),
                        &format!("ip={ip},port={port},state=online,offset={ack},lag=0"),
                    );
                }
            }
        }
        field("master_replid", &self.replid);
        field("master_replid2", &self.replid2);
        field("master_repl_offset", &self.offset);
        field("second_repl_offset", &self.offset2);
        let (active, size, first, len) = match &self.backlog {
            Some(b) => (1, b.capacity(), b.start() + 1, b.len()),
            None => (0, self.settings.repl_backlog, 0, 0),
        };
        field("repl_backlog_active", &active);
        field("repl_backlog_size", &size);
        field("repl_backlog_first_byte_offset", &first);
        field("repl_backlog_histlen", &len);
    }
}

fn capitalise(name: &str) -> String {
    let mut c = name.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}

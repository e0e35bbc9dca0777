//! Service names by TCP port, from `/etc/services`: what Python's
//! `socket.getservbyport(port)` answers, read once before the scan starts
//! (the file is small; reading it inside the loop would block it).

use std::collections::HashMap;

/// TCP port -> the service's name (the first entry for the port wins, as
/// `getservbyport` does).
pub fn tcp_services(text: &str) -> HashMap<u16, String> {
    let mut names = HashMap::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut fields = line.split_whitespace();
        let (Some(name), Some(port_proto)) = (fields.next(), fields.next()) else {
            continue;
        };
        let Some((port, "tcp")) = port_proto.split_once('/') else {
            continue;
        };
        if let Ok(port) = port.parse::<u16>() {
            names.entry(port).or_insert_with(|| name.to_string());
        }
    }
    names
}

/// `/etc/services`, or no names at all if it cannot be read (a minimal
/// container): the scan does not depend on it.
pub fn load() -> HashMap<u16, String> {
    match std::fs::read_to_string("/etc/services") {
        Ok(text) => tcp_services(&text),
        Err(e) => {
            log::warn!("/etc/services: {e}: no service names");
            HashMap::new()
        }
    }
}

//! The example's `Shared`: everyone's sender, keyed by address, and the
//! broadcast. Used by tokio_chat and, through `#[path]`, by tokio_ws_chat.

use std::collections::HashMap;
use std::net::SocketAddr;

use tokio::sync::mpsc;

pub type Tx = mpsc::UnboundedSender<String>;
pub type Rx = mpsc::UnboundedReceiver<String>;

/// Everyone's sender, keyed by address.
pub struct Shared {
    pub peers: HashMap<SocketAddr, Tx>,
}

impl Shared {
    /// Sends `message` to every peer but `sender`: one channel send each,
    /// and each peer's task writes it to its socket on its own.
    pub fn broadcast(&mut self, sender: SocketAddr, message: &str) {
        for (addr, tx) in self.peers.iter() {
            if *addr != sender {
                let _ = tx.send(message.into());
            }
        }
    }
}

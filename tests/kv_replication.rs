//! `kv_server`'s replication (ours alone: Redis's PSYNC is not spoken, so
//! these run on `kv_server` only): replicas that follow a primary, survive
//! restarts of either side, fail over by hand, and are cut off when they
//! stall.

mod support;

use std::time::Duration;

use reactor::codec::resp::Value;
use support::Server;
use support::kv::{Client, bulk, eventually, ok};

fn start(args: &[&str]) -> Server {
    let mut all = vec!["--addr", "127.0.0.1:0"];
    all.extend_from_slice(args);
    Server::start("kv_server", &all, 1)
}

fn replica_of(primary: &Server, extra: &[&str]) -> Server {
    let p = primary.addr().to_string();
    let mut args = vec!["--replica-of", p.as_str()];
    args.extend_from_slice(extra);
    start(&args)
}

/// Waits until `key` reads `want` on `server`.
#[track_caller]
fn sees(server: &Server, key: &str, want: Value) {
    let mut c = Client::connect(server.addr());
    let mut last = Value::Null;
    let ok = eventually(Duration::from_secs(15), || {
        last = c.call(&["GET", key]);
        last == want
    });
    assert!(ok, "{key} on {}: {last:?}, wanted {want:?}", server.addr());
}

fn link_up(server: &Server) -> bool {
    let mut c = Client::connect(server.addr());
    eventually(Duration::from_secs(15), || {
        c.info_field("replication", "master_link_status") == "up"
    })
}

#[test]
fn writes_on_the_primary_reach_two_replicas() {
    let _heavy = support::heavy();
    let primary = start(&[]);
    let mut p = Client::connect(primary.addr());
    p.call(&["SET", "before", "1"]);
    p.call(&["HSET", "h", "f", "v"]);
    let r1 = replica_of(&primary, &[]);
    let r2 = replica_of(&primary, &[]);
    assert!(link_up(&r1) && link_up(&r2));
    sees(&r1, "before", bulk("1"));
    p.call(&["SET", "after", "2"]);
    p.call(&["SET", "ttl", "v", "EX", "100"]);
    p.call(&["MULTI"]);
    p.call(&["INCR", "counter"]);
    p.call(&["INCR", "counter"]);
    p.call(&["EXEC"]);
    // WAIT: both replicas acknowledge what was written so far.
    assert_eq!(p.call(&["WAIT", "2", "5000"]), Value::Integer(2));
    for r in [&r1, &r2] {
        let mut c = Client::connect(r.addr());
        assert_eq!(c.call(&["GET", "after"]), bulk("2"));
        assert_eq!(c.call(&["GET", "counter"]), bulk("2"));
        assert_eq!(c.call(&["HGET", "h", "f"]), bulk("v"));
        let Value::Integer(ttl) = c.call(&["TTL", "ttl"]) else {
            panic!()
        };
        assert!(
            (95..=100).contains(&ttl),
            "the deadline is the primary's: {ttl}"
        );
        assert_eq!(
            c.call(&["SET", "x", "1"]),
            Value::Error("READONLY You can't write against a read only replica.".into())
        );
        assert_eq!(c.info_field("replication", "role"), "slave");
    }
    assert_eq!(p.info_field("replication", "connected_slaves"), "2");
    // More replicas than there are: WAIT answers at its timeout, with the
    // count it has; inside a transaction it answers at once.
    assert_eq!(p.call(&["WAIT", "3", "100"]), Value::Integer(2));
    p.call(&["MULTI"]);
    p.call(&["SET", "in-multi", "1"]);
    p.call(&["WAIT", "3", "0"]);
    let Value::Array(replies) = p.call(&["EXEC"]) else {
        panic!("EXEC")
    };
    assert_eq!(replies[0], ok());
    assert!(matches!(replies[1], Value::Integer(n) if n <= 2));
    // A pipeline behind a WAIT waits for it, and keeps its order.
    p.send(&["SET", "w", "1"]);
    p.send(&["WAIT", "2", "5000"]);
    p.send(&["GET", "w"]);
    assert_eq!(p.read(), ok());
    assert_eq!(p.read(), Value::Integer(2));
    assert_eq!(p.read(), bulk("1"));
    let offset: u64 = p
        .info_field("replication", "master_repl_offset")
        .parse()
        .unwrap();
    assert!(offset > 0);
    // Expiry on the primary reaches the replicas as a DEL.
    p.call(&["SET", "short", "v", "PX", "100"]);
    assert_eq!(p.call(&["WAIT", "2", "5000"]), Value::Integer(2));
    let mut c1 = Client::connect(r1.addr());
    assert!(eventually(Duration::from_secs(5), || c1
        .call(&["EXISTS", "short"])
        == Value::Integer(0)));
}

#[test]
fn a_killed_replica_restarts_and_resyncs() {
    let _heavy = support::heavy();
    let primary = start(&[]);
    let mut p = Client::connect(primary.addr());
    let replica = replica_of(&primary, &[]);
    assert!(link_up(&replica));
    p.call(&["SET", "a", "1"]);
    sees(&replica, "a", bulk("1"));
    drop(replica); // killed
    p.call(&["SET", "b", "2"]);
    let replica = replica_of(&primary, &[]);
    sees(&replica, "b", bulk("2"));
    sees(&replica, "a", bulk("1"));
    p.call(&["SET", "c", "3"]);
    sees(&replica, "c", bulk("3"));
}

#[test]
fn a_replica_keeps_serving_while_its_primary_is_down_and_catches_up() {
    let _heavy = support::heavy();
    let dir = std::env::temp_dir().join(format!("kv-repl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let snap = dir.join("p.kvs");
    let snap_s = snap.to_str().unwrap().to_string();
    let primary = start(&["--snapshot", &snap_s]);
    let addr = primary.addr().to_string();
    let mut p = Client::connect(primary.addr());
    let replica = replica_of(&primary, &[]);
    assert!(link_up(&replica));
    p.call(&["SET", "k", "1"]);
    sees(&replica, "k", bulk("1"));
    primary.signal(15); // saves the snapshot and stops
    let _ = primary.wait(Duration::from_secs(10));
    let mut r = Client::connect(replica.addr());
    assert!(eventually(Duration::from_secs(10), || {
        r.info_field("replication", "master_link_status") == "down"
    }));
    assert_eq!(r.call(&["GET", "k"]), bulk("1"), "reads go on");
    // The primary returns on the same address; the replica retries.
    let primary = start(&["--addr", &addr, "--snapshot", &snap_s]);
    let mut p = Client::connect(primary.addr());
    p.call(&["SET", "k", "2"]);
    sees(&replica, "k", bulk("2"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn failover_by_hand_promotes_a_replica_and_repoints_the_other() {
    let _heavy = support::heavy();
    let primary = start(&[]);
    let mut p = Client::connect(primary.addr());
    let r1 = replica_of(&primary, &[]);
    let r2 = replica_of(&primary, &[]);
    assert!(link_up(&r1) && link_up(&r2));
    p.call(&["SET", "k", "old"]);
    assert_eq!(p.call(&["WAIT", "2", "5000"]), Value::Integer(2));
    drop(primary); // killed
    let mut c1 = Client::connect(r1.addr());
    assert_eq!(c1.call(&["REPLICAOF", "NO", "ONE"]), ok());
    assert_eq!(c1.info_field("replication", "role"), "master");
    let port = r1.addr().port().to_string();
    let mut c2 = Client::connect(r2.addr());
    assert_eq!(c2.call(&["REPLICAOF", "127.0.0.1", &port]), ok());
    assert!(link_up(&r2));
    assert_eq!(c1.call(&["SET", "k", "new"]), ok());
    sees(&r2, "k", bulk("new"));
    // The other replica continued from its offset (the promoted node kept
    // the old primary's id as its previous one): no full copy.
    assert_eq!(c1.info_field("stats", "sync_partial_ok"), "1");
    assert_eq!(c1.info_field("stats", "sync_full"), "0");
    assert_eq!(c1.call(&["WAIT", "1", "5000"]), Value::Integer(1));
}

#[test]
fn a_stalled_replica_is_cut_off_and_recovers() {
    let _heavy = support::heavy();
    let primary = start(&["--repl-output-limit", "1mb", "--repl-backlog", "64kb"]);
    let mut p = Client::connect(primary.addr());
    let replica = replica_of(&primary, &[]);
    assert!(link_up(&replica));
    replica.signal(19); // SIGSTOP: it reads nothing
    let value = "v".repeat(100_000);
    for i in 0..300 {
        // 30 MB: past the kernel's buffers and the 1 MB limit.
        assert_eq!(p.call(&["SET", &format!("big{}", i % 10), &value]), ok());
    }
    assert!(
        eventually(Duration::from_secs(10), || {
            p.info_field("replication", "connected_slaves") == "0"
        }),
        "the stalled replica was dropped"
    );
    replica.signal(18); // SIGCONT
    p.call(&["SET", "last", "1"]);
    sees(&replica, "last", bulk("1"));
    sees(&replica, "big9", bulk(&value));
    assert!(eventually(Duration::from_secs(10), || {
        p.info_field("replication", "connected_slaves") == "1"
    }));
    // 30 MB missed, a 64 KB backlog: the second sync was a full copy.
    assert_eq!(p.info_field("stats", "sync_full"), "2");
}

#[test]
fn a_replica_that_missed_little_continues_from_the_backlog() {
    let _heavy = support::heavy();
    let primary = start(&["--repl-output-limit", "256kb", "--repl-backlog", "8mb"]);
    let mut p = Client::connect(primary.addr());
    let replica = replica_of(&primary, &[]);
    assert!(link_up(&replica));
    replica.signal(19); // SIGSTOP
    let value = "v".repeat(10_000);
    let mut i = 0;
    // Write until the primary drops the stalled replica (kernel buffers
    // first, then our 256 KB limit), staying within the 8 MB backlog.
    let dropped = eventually(Duration::from_secs(20), || {
        for _ in 0..10 {
            i += 1;
            p.call(&["SET", &format!("k{}", i % 100), &value]);
        }
        p.info_field("replication", "connected_slaves") == "0"
    });
    assert!(
        dropped && i * 10_000 < 8_000_000,
        "dropped after {i} writes"
    );
    replica.signal(18); // SIGCONT
    p.call(&["SET", "last", "1"]);
    sees(&replica, "last", bulk("1"));
    assert_eq!(p.info_field("stats", "sync_partial_ok"), "1");
    assert_eq!(p.info_field("stats", "sync_full"), "1");
}

#[test]
fn a_replica_authenticates_to_a_primary_with_a_password() {
    let _heavy = support::heavy();
    let primary = start(&["--requirepass", "pw"]);
    let mut p = Client::connect(primary.addr());
    assert_eq!(p.call(&["AUTH", "pw"]), ok());
    p.call(&["SET", "k", "v"]);
    let replica = replica_of(&primary, &["--primary-auth", "pw"]);
    sees(&replica, "k", bulk("v"));
    // Without the password the primary refuses the sync, and the replica
    // says its link is down.
    let refused = replica_of(&primary, &[]);
    let mut r = Client::connect(refused.addr());
    assert_eq!(r.info_field("replication", "master_link_status"), "down");
    assert_eq!(r.call(&["GET", "k"]), Value::Null);
}

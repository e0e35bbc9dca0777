//! `kv_server` as clients see it. The protocol cases run against
//! `kv_server` and against a real `redis-server` started on a free port
//! (skipped, with a reason, if it is not installed, unless REQUIRE_ALL=1):
//! a case that passes on ours and fails on Redis is a wrong test. The cases
//! that are ours alone (hostile-header limits, the snapshot, our flags) say
//! so and run on `kv_server` only.

mod support;

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use reactor::codec::resp::Value;
use support::kv::{Client, Target, both, bulk, eventually, ok};

fn int(n: i64) -> Value {
    Value::Integer(n)
}

fn err_starts(v: &Value, prefix: &str) -> bool {
    matches!(v, Value::Error(e) if e.starts_with(prefix))
}

/// The shared cases: each command and the reply both servers must give.
#[test]
fn command_replies_match_redis() {
    let _heavy = support::heavy();
    for target in both(&[]) {
        let mut c = target.client();
        let name = target.name();
        let cases: Vec<(Vec<&str>, Value)> = vec![
            (vec!["PING"], Value::Simple("PONG".into())),
            (vec!["PING", "hi"], bulk("hi")),
            (vec!["ECHO", "x y"], bulk("x y")),
            (vec!["SELECT", "0"], ok()),
            (vec!["SET", "s", "1"], ok()),
            (vec!["GET", "s"], bulk("1")),
            (vec!["GET", "nothing"], Value::Null),
            (vec!["SET", "s", "2", "NX"], Value::Null),
            (vec!["SET", "s", "3", "XX", "GET"], bulk("1")),
            (vec!["SET", "fresh", "v", "XX"], Value::Null),
            (vec!["INCR", "s"], int(4)),
            (vec!["INCRBY", "s", "10"], int(14)),
            (vec!["DECR", "s"], int(13)),
            (vec!["DECRBY", "s", "3"], int(10)),
            (vec!["APPEND", "s", "0"], int(3)),
            (vec!["STRLEN", "s"], int(3)),
            (vec!["GETDEL", "s"], bulk("100")),
            (vec!["EXISTS", "s"], int(0)),
            (vec!["MSET", "a", "1", "b", "2"], ok()),
            (
                vec!["MGET", "a", "nothing", "b"],
                Value::Array(vec![bulk("1"), Value::Null, bulk("2")]),
            ),
            (vec!["EXISTS", "a", "b", "a"], int(3)),
            (vec!["DEL", "a", "nothing"], int(1)),
            (vec!["UNLINK", "b"], int(1)),
            (vec!["TYPE", "b"], Value::Simple("none".into())),
            (vec!["HSET", "h", "f", "1", "g", "2"], int(2)),
            (vec!["HSET", "h", "f", "3"], int(0)),
            (vec!["HGET", "h", "f"], bulk("3")),
            (vec!["HGET", "h", "nope"], Value::Null),
            (vec!["HINCRBY", "h", "g", "5"], int(7)),
            (vec!["HLEN", "h"], int(2)),
            (vec!["HDEL", "h", "f", "nope"], int(1)),
            (
                vec!["HGETALL", "h"],
                Value::Array(vec![bulk("g"), bulk("7")]),
            ),
            (vec!["TYPE", "h"], Value::Simple("hash".into())),
            (vec!["RPUSH", "l", "a", "b", "c"], int(3)),
            (vec!["LPUSH", "l", "z"], int(4)),
            (
                vec!["LRANGE", "l", "0", "-1"],
                Value::Array(vec![bulk("z"), bulk("a"), bulk("b"), bulk("c")]),
            ),
            (
                vec!["LRANGE", "l", "-2", "100"],
                Value::Array(vec![bulk("b"), bulk("c")]),
            ),
            (vec!["LRANGE", "l", "5", "10"], Value::Array(vec![])),
            (vec!["LPOP", "l"], bulk("z")),
            (
                vec!["RPOP", "l", "2"],
                Value::Array(vec![bulk("c"), bulk("b")]),
            ),
            (vec!["LLEN", "l"], int(1)),
            (vec!["RPOP", "l"], bulk("a")),
            (vec!["EXISTS", "l"], int(0)),
            (vec!["LPOP", "l"], Value::Null),
            (vec!["TYPE", "h"], Value::Simple("hash".into())),
            (vec!["SET", "t", "v", "EX", "100"], ok()),
            (vec!["TTL", "t"], int(100)),
            (vec!["PERSIST", "t"], int(1)),
            (vec!["TTL", "t"], int(-1)),
            (vec!["TTL", "nothing"], int(-2)),
            (vec!["EXPIRE", "t", "50"], int(1)),
            (vec!["EXPIRE", "t", "60", "NX"], int(0)),
            (vec!["EXPIRE", "nothing", "50"], int(0)),
            (vec!["PEXPIRE", "t", "-1"], int(1)),
            (vec!["EXISTS", "t"], int(0)),
            (vec!["SETEX", "t", "100", "v"], ok()),
            (vec!["SET", "t", "w", "KEEPTTL"], ok()),
            (vec!["TTL", "t"], int(100)),
            (vec!["DBSIZE"], int(2)),
            (vec!["KEYS", "h*"], Value::Array(vec![bulk("h")])),
            (vec!["FLUSHDB"], ok()),
            (vec!["DBSIZE"], int(0)),
            (vec!["MULTI"], ok()),
            (vec!["SET", "m", "1"], Value::Simple("QUEUED".into())),
            (vec!["INCR", "m"], Value::Simple("QUEUED".into())),
            (vec!["EXEC"], Value::Array(vec![ok(), int(2)])),
            (vec!["EXEC"], Value::Error("ERR EXEC without MULTI".into())),
            (
                vec!["DISCARD"],
                Value::Error("ERR DISCARD without MULTI".into()),
            ),
            (vec!["CLIENT", "SETNAME", "tester"], ok()),
            (vec!["CLIENT", "GETNAME"], bulk("tester")),
            (vec!["FLUSHALL"], ok()),
        ];
        for (args, want) in &cases {
            assert_eq!(&c.call(args), want, "{name}: {args:?}");
        }
        // The error texts clients may depend on.
        c.call(&["SET", "str", "x"]);
        c.call(&["RPUSH", "list", "x"]);
        let errors: Vec<(Vec<&str>, &str)> = vec![
            (
                vec!["GET"],
                "ERR wrong number of arguments for 'get' command",
            ),
            (
                vec!["GET", "list"],
                "WRONGTYPE Operation against a key holding the wrong kind of value",
            ),
            (
                vec!["LPUSH", "str", "x"],
                "WRONGTYPE Operation against a key holding the wrong kind of value",
            ),
            (
                vec!["INCR", "str"],
                "ERR value is not an integer or out of range",
            ),
            (
                vec!["INCRBY", "n", "x"],
                "ERR value is not an integer or out of range",
            ),
            (
                vec!["SET", "k", "v", "EX", "0"],
                "ERR invalid expire time in 'set' command",
            ),
            (vec!["SET", "k", "v", "NX", "XX"], "ERR syntax error"),
            // Deadlines past an i64 of milliseconds (a TTL on one once
            // crashed our server, and a replica dropped its write).
            (
                vec!["SET", "k", "v", "PX", "9223372036854775807"],
                "ERR invalid expire time in 'set' command",
            ),
            (
                vec!["SET", "k", "v", "EX", "9223372036854775"],
                "ERR invalid expire time in 'set' command",
            ),
            (
                vec!["SETEX", "k", "9223372036854775", "v"],
                "ERR invalid expire time in 'setex' command",
            ),
            (vec!["SHUTDOWN", "NOSAVE", "x"], "ERR syntax error"),
            (vec!["SELECT", "16"], "ERR DB index is out of range"),
            (
                vec!["HSET", "h", "f"],
                "ERR wrong number of arguments for 'hset' command",
            ),
            (
                vec!["MSET", "a"],
                "ERR wrong number of arguments for 'mset' command",
            ),
            (
                vec!["NOSUCH", "a", "b"],
                "ERR unknown command 'NOSUCH', with args beginning with: 'a' 'b' ",
            ),
            (
                vec!["AUTH", "x"],
                "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
            ),
        ];
        for (args, want) in &errors {
            assert_eq!(
                c.call(args),
                Value::Error(want.to_string()),
                "{name}: {args:?}"
            );
        }
        c.call(&["SET", "n", "9223372036854775807"]);
        assert_eq!(
            c.call(&["INCR", "n"]),
            Value::Error("ERR increment or decrement would overflow".into()),
            "{name}"
        );
        // SCAN's TYPE filters.
        c.call(&["SET", "typed:s", "v"]);
        c.call(&["HSET", "typed:h", "f", "v"]);
        let Value::Array(parts) = c.call(&[
            "SCAN", "0", "MATCH", "typed:*", "COUNT", "1000", "TYPE", "hash",
        ]) else {
            panic!("{name}: SCAN reply")
        };
        assert_eq!(
            parts[1],
            Value::Array(vec![bulk("typed:h")]),
            "{name}: SCAN TYPE"
        );
        // What stops the server is refused inside a transaction, and the
        // transaction with it.
        c.call(&["MULTI"]);
        assert_eq!(
            c.call(&["SHUTDOWN", "NOSAVE"]),
            Value::Error("ERR Command not allowed inside a transaction".into()),
            "{name}"
        );
        assert!(err_starts(&c.call(&["EXEC"]), "EXECABORT"), "{name}");
        // A transaction with a refused command is discarded.
        c.call(&["MULTI"]);
        assert!(err_starts(&c.call(&["GET"]), "ERR wrong number"), "{name}");
        assert!(err_starts(&c.call(&["EXEC"]), "EXECABORT"), "{name}");
        // WATCH: a write by another client aborts the transaction.
        let mut other = target.client();
        c.call(&["WATCH", "w"]);
        other.call(&["SET", "w", "1"]);
        c.call(&["MULTI"]);
        c.call(&["SET", "w", "2"]);
        assert_eq!(c.call(&["EXEC"]), Value::Null, "{name}: WATCH");
        // SCAN walks every key, whatever the COUNT.
        for i in 0..50 {
            c.call(&["SET", &format!("scan:{i}"), "v"]);
        }
        let mut seen = std::collections::BTreeSet::new();
        let mut cursor = "0".to_string();
        for _ in 0..1000 {
            let Value::Array(parts) = c.call(&["SCAN", &cursor, "MATCH", "scan:*", "COUNT", "7"])
            else {
                panic!("{name}: SCAN reply")
            };
            cursor = String::from_utf8(parts[0].as_bytes().unwrap().to_vec()).unwrap();
            let Value::Array(keys) = &parts[1] else {
                panic!()
            };
            seen.extend(keys.iter().map(|k| k.as_bytes().unwrap().to_vec()));
            if cursor == "0" {
                break;
            }
        }
        assert_eq!(seen.len(), 50, "{name}: SCAN");
        // QUIT answers and closes.
        assert_eq!(c.call(&["QUIT"]), ok());
        assert!(c.try_read().is_none(), "{name}: closed after QUIT");
    }
}

#[test]
fn resp3_after_hello_3_and_auth_through_hello() {
    let _heavy = support::heavy();
    for target in both(&["--requirepass", "sesame"]) {
        let name = target.name();
        let mut c = target.client();
        assert_eq!(
            c.call(&["GET", "a"]),
            Value::Error("NOAUTH Authentication required.".into()),
            "{name}"
        );
        assert!(
            err_starts(&c.call(&["AUTH", "wrong"]), "WRONGPASS"),
            "{name}"
        );
        assert!(err_starts(&c.call(&["HELLO", "4"]), "NOPROTO"), "{name}");
        let Value::Map(fields) =
            c.call(&["HELLO", "3", "AUTH", "default", "sesame", "SETNAME", "me"])
        else {
            panic!("{name}: HELLO 3 answers a map")
        };
        let field = |k: &str| {
            fields
                .iter()
                .find(|(f, _)| f == &bulk(k))
                .map(|(_, v)| v.clone())
        };
        assert_eq!(field("server"), Some(bulk("redis")), "{name}");
        assert_eq!(field("proto"), Some(int(3)), "{name}");
        assert_eq!(field("role"), Some(bulk("master")), "{name}");
        assert!(field("id").is_some() && field("version").is_some() && field("mode").is_some());
        assert_eq!(c.call(&["GET", "nothing"]), Value::Null, "{name}");
        c.call(&["HSET", "h", "f", "v"]);
        assert_eq!(
            c.call(&["HGETALL", "h"]),
            Value::Map(vec![(bulk("f"), bulk("v"))]),
            "{name}"
        );
        assert_eq!(c.call(&["CLIENT", "GETNAME"]), bulk("me"), "{name}");
        // Back to RESP2.
        assert!(matches!(c.call(&["HELLO", "2"]), Value::Array(_)), "{name}");
        assert_eq!(
            c.call(&["HGETALL", "h"]),
            Value::Array(vec![bulk("f"), bulk("v")])
        );
        let mut d = target.client();
        assert_eq!(d.call(&["AUTH", "default", "sesame"]), ok(), "{name}");
        assert_eq!(d.call(&["GET", "nothing"]), Value::Null);
    }
}

#[test]
fn pipelined_bursts_split_at_every_byte_boundary() {
    let _heavy = support::heavy();
    let mut burst = Vec::new();
    let mut expected = Vec::new();
    for i in 0..8 {
        reactor::codec::resp::encode::command(
            &mut burst,
            &["SET", &format!("k{i}"), &"v".repeat(i * 3)],
        );
        expected.push(ok());
        reactor::codec::resp::encode::command(&mut burst, &["GET", &format!("k{i}")]);
        expected.push(bulk(&"v".repeat(i * 3)));
    }
    burst.extend_from_slice(b"PING\r\n");
    expected.push(Value::Simple("PONG".into()));
    for target in both(&[]) {
        for split in 1..burst.len() {
            let mut c = target.client();
            c.send_raw(&burst[..split]);
            c.stream.flush().unwrap();
            c.send_raw(&burst[split..]);
            for (i, want) in expected.iter().enumerate() {
                assert_eq!(
                    &c.read(),
                    want,
                    "{}: split {split}, reply {i}",
                    target.name()
                );
            }
        }
        // Large values, alone and between small replies, in order.
        let mut c = target.client();
        let big: String = (0..100_000)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        assert_eq!(c.call(&["SET", "big", &big]), ok());
        assert_eq!(c.call(&["GET", "big"]), bulk(&big));
        let mut mixed = Vec::new();
        for key in ["big", "k1", "big", "nothing", "big"] {
            reactor::codec::resp::encode::command(&mut mixed, &["GET", key]);
        }
        c.send_raw(&mixed);
        for want in [bulk(&big), bulk("vvv"), bulk(&big), Value::Null, bulk(&big)] {
            assert_eq!(c.read(), want, "{}", target.name());
        }
        c.send(&["HSET", "bh", "f", &big]);
        assert_eq!(c.read(), int(1));
        assert_eq!(c.call(&["HGET", "bh", "f"]), bulk(&big));
        // A thousand commands in one write, answered in order.
        let mut big = Vec::new();
        for i in 0..1000 {
            reactor::codec::resp::encode::command(&mut big, &["INCR", "counter"]);
            let _ = i;
        }
        let mut c = target.client();
        c.send_raw(&big);
        for i in 1..=1000 {
            assert_eq!(c.read(), int(i), "{}", target.name());
        }
    }
}

#[test]
fn a_thousand_clients_at_once() {
    let _heavy = support::heavy();
    let target = Target::kv(&[]);
    let mut clients: Vec<Client> = (0..1000).map(|_| target.client()).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.send(&["SET", &format!("client:{i}"), &i.to_string()]);
    }
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(c.read(), ok());
        assert_eq!(
            c.call(&["GET", &format!("client:{i}")]),
            bulk(&i.to_string())
        );
    }
    assert_eq!(clients[0].call(&["DBSIZE"]), int(1000));
}

#[test]
fn keys_expire_under_load() {
    let _heavy = support::heavy();
    for target in both(&[]) {
        let name = target.name();
        let mut c = target.client();
        let mut burst = Vec::new();
        for i in 0..20_000 {
            reactor::codec::resp::encode::command(
                &mut burst,
                &["SET", &format!("e:{i}"), "v", "PX", "300"],
            );
        }
        c.send_raw(&burst);
        for _ in 0..20_000 {
            assert_eq!(c.read(), ok());
        }
        c.call(&["SET", "stays", "1"]);
        // Reads and writes go on while the keys expire; nobody touches
        // the expiring keys, so only the active cycle can remove them.
        let gone = eventually(Duration::from_secs(15), || {
            c.call(&["INCR", "stays"]);
            c.call(&["DBSIZE"]) == int(1)
        });
        assert!(gone, "{name}: the active cycle removed every expired key");
        assert_eq!(c.call(&["GET", "e:1"]), Value::Null, "{name}");
        let expired: u64 = c.info_field("stats", "expired_keys").parse().unwrap();
        assert_eq!(expired, 20_000, "{name}");
    }
}

#[test]
fn maxmemory_noeviction_refuses_writes_and_still_deletes() {
    let _heavy = support::heavy();
    for target in both(&[]) {
        let name = target.name();
        let mut c = target.client();
        c.call(&["SET", "a", "1"]);
        assert_eq!(
            c.call(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]),
            ok()
        );
        assert_eq!(c.call(&["CONFIG", "SET", "maxmemory", "1"]), ok());
        let refused = c.call(&["SET", "b", "2"]);
        assert_eq!(
            refused,
            Value::Error("OOM command not allowed when used memory > 'maxmemory'.".into()),
            "{name}"
        );
        assert_eq!(c.call(&["GET", "a"]), bulk("1"), "{name}: reads still work");
        assert_eq!(c.call(&["DEL", "a"]), int(1), "{name}: DEL still works");
        assert_eq!(c.call(&["CONFIG", "SET", "maxmemory", "0"]), ok());
        assert_eq!(c.call(&["SET", "b", "2"]), ok(), "{name}");
    }
}

/// Ours alone: the threshold counts our own estimate of the dataset.
#[test]
fn maxmemory_allkeys_lru_evicts_to_stay_under() {
    let _heavy = support::heavy();
    let target = Target::kv(&["--maxmemory", "1mb", "--maxmemory-policy", "allkeys-lru"]);
    let mut c = target.client();
    let value = "x".repeat(1000);
    for i in 0..5000 {
        c.send(&["SET", &format!("k{i}"), &value]);
    }
    for _ in 0..5000 {
        assert_eq!(c.read(), ok());
    }
    let used: usize = c.info_field("memory", "used_memory").parse().unwrap();
    let evicted: u64 = c.info_field("stats", "evicted_keys").parse().unwrap();
    let Value::Integer(keys) = c.call(&["DBSIZE"]) else {
        panic!()
    };
    // Eviction runs before each write, as Redis's does: the write itself
    // may pass the limit by its own size until the next one.
    assert!(used <= (1 << 20) + 2048, "used {used}");
    assert!(
        evicted > 3000 && keys < 2000 && keys > 500,
        "evicted {evicted}, kept {keys}"
    );
    assert_eq!(
        c.call(&["GET", "k4999"]),
        bulk(&value),
        "the newest key stays"
    );
}

/// Ours alone: the limits on headers.
#[test]
fn hostile_headers_get_an_error_and_a_close() {
    let target = Target::kv(&["--max-bulk", "1mb"]);
    for (input, error) in [
        (
            &b"*99999999\r\n"[..],
            "ERR Protocol error: invalid multibulk length",
        ),
        (
            b"*1\r\n$4294967296\r\n",
            "ERR Protocol error: invalid bulk length",
        ),
        (
            b"*1\r\n$2000000\r\n",
            "ERR Protocol error: invalid bulk length",
        ),
        (b"*1\r\n:5\r\n", "ERR Protocol error: expected '$', got ':'"),
    ] {
        let mut c = target.client();
        c.send_raw(input);
        assert_eq!(c.read(), Value::Error(error.into()));
        assert!(c.try_read().is_none(), "closed after {error}");
    }
    // Under the limits, the server waits for the data, and reserves
    // nothing for what a header announces.
    let roomy = Target::kv(&[]);
    let Target::Kv(roomy_server) = &roomy else {
        unreachable!()
    };
    let before = roomy_server.rss_kib();
    let mut announcers: Vec<Client> = (0..20).map(|_| roomy.client()).collect();
    for a in &mut announcers {
        a.send_raw(b"*2\r\n$4\r\nECHO\r\n$400000000\r\nonly a few bytes");
    }
    let mut probe = roomy.client();
    assert_eq!(probe.call(&["PING"]), Value::Simple("PONG".into()));
    let after = roomy_server.rss_kib();
    assert!(
        after < before + 16 * 1024,
        "rss {before} KiB -> {after} KiB"
    );
    let mut c = target.client();
    c.send_raw(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$500000\r\n");
    c.send_raw(&vec![b'v'; 500_000]);
    c.send_raw(b"\r\n");
    assert_eq!(c.read(), ok());
    assert_eq!(c.call(&["STRLEN", "k"]), int(500_000));
}

/// Ours alone (our flag): a client that sends `KEYS *` many times and
/// never reads the replies keeps the server's memory bounded: past the
/// high-water mark of its output the rest of its pipeline waits, unread,
/// and a client past its output limit is dropped.
#[test]
fn slow_reader_of_keys_replies_keeps_memory_bounded() {
    let _heavy = support::heavy();
    let target = Target::kv(&["--client-output-limit", "8mb"]);
    let Target::Kv(server) = &target else {
        unreachable!()
    };
    let mut c = target.client();
    let mut burst = Vec::new();
    for i in 0..20_000 {
        reactor::codec::resp::encode::command(
            &mut burst,
            &["SET", &format!("key:{i:06}:{}", "p".repeat(180)), "v"],
        );
    }
    c.send_raw(&burst);
    for _ in 0..20_000 {
        c.read();
    }
    let before = server.rss_kib();
    let mut slow = target.client();
    // About 4 MB of reply each: 800 MB if all were built at once.
    let keys = b"KEYS *\r\n".repeat(200);
    slow.send_raw(&keys);
    // The server goes on serving others meanwhile.
    for _ in 0..20 {
        assert_eq!(c.call(&["DBSIZE"]), int(20_000));
    }
    let after = server.rss_kib();
    assert!(
        after < before + 64 * 1024,
        "rss {before} KiB -> {after} KiB"
    );
    // Replies flow again when the client reads.
    for _ in 0..3 {
        let Value::Array(keys) = slow.read() else {
            panic!("KEYS reply")
        };
        assert_eq!(keys.len(), 20_000);
    }
    // A client whose one reply passes the output limit is dropped.
    let tiny = Target::kv(&["--client-output-limit", "1mb"]);
    let mut filler = tiny.client();
    let mut burst = Vec::new();
    for i in 0..20_000 {
        reactor::codec::resp::encode::command(
            &mut burst,
            &["SET", &format!("key:{i:06}:{}", "p".repeat(180)), "v"],
        );
    }
    filler.send_raw(&burst);
    for _ in 0..20_000 {
        filler.read();
    }
    let mut greedy = tiny.client();
    greedy
        .stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    greedy.send_raw(b"KEYS *\r\n");
    let dropped = eventually(Duration::from_secs(10), || {
        filler.info_field("clients", "connected_clients") == "1"
    });
    assert!(dropped, "the client over its output limit was dropped");
}

/// Ours alone: the snapshot.
#[test]
fn snapshot_survives_a_restart_and_a_corrupt_one_stops_the_start() {
    let _heavy = support::heavy();
    let dir = std::env::temp_dir().join(format!("kv-snapshot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("dump.kvs");
    let path_s = path.to_str().unwrap();
    {
        let target = Target::kv(&["--snapshot", path_s]);
        let mut c = target.client();
        c.call(&["SET", "s", "v"]);
        c.call(&["SET", "ttl", "v", "EX", "1000"]);
        c.call(&["SET", "gone", "v", "PX", "1"]);
        c.call(&["HSET", "h", "f", "1"]);
        c.call(&["RPUSH", "l", "a", "b"]);
        assert_eq!(c.call(&["SAVE"]), ok());
        c.call(&["SET", "after-save", "kept by SIGTERM"]);
        let Target::Kv(server) = target else {
            unreachable!()
        };
        server.signal(15);
        let (status, _) = server.wait(Duration::from_secs(10));
        assert!(status.success());
    }
    {
        let target = Target::kv(&["--snapshot", path_s]);
        let mut c = target.client();
        assert_eq!(c.call(&["GET", "s"]), bulk("v"));
        assert_eq!(c.call(&["GET", "after-save"]), bulk("kept by SIGTERM"));
        assert_eq!(c.call(&["GET", "gone"]), Value::Null);
        let Value::Integer(ttl) = c.call(&["TTL", "ttl"]) else {
            panic!()
        };
        assert!((990..=1000).contains(&ttl));
        assert_eq!(c.call(&["HGET", "h", "f"]), bulk("1"));
        assert_eq!(
            c.call(&["LRANGE", "l", "0", "-1"]),
            Value::Array(vec![bulk("a"), bulk("b")])
        );
        c.send(&["SHUTDOWN"]);
        assert!(c.try_read().is_none(), "SHUTDOWN closes without a reply");
        let Target::Kv(server) = target else {
            unreachable!()
        };
        let (status, _) = server.wait(Duration::from_secs(10));
        assert!(status.success());
    }
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();
    let (status, _, stderr) = support::run_example(
        "kv_server",
        &["--addr", "127.0.0.1:0", "--snapshot", path_s],
        Duration::from_secs(10),
    );
    assert_eq!(status.code(), Some(1));
    assert!(stderr.contains("checksum mismatch"), "{stderr}");
    bytes[middle] ^= 0x55;
    bytes[6] = 9; // version 9
    std::fs::write(&path, &bytes).unwrap();
    let (status, _, stderr) = support::run_example(
        "kv_server",
        &["--addr", "127.0.0.1:0", "--snapshot", path_s],
        Duration::from_secs(10),
    );
    assert_eq!(status.code(), Some(1));
    assert!(stderr.contains("unknown snapshot version 9"), "{stderr}");
    std::fs::write(&path, b"not a snapshot at all").unwrap();
    let (status, _, stderr) = support::run_example(
        "kv_server",
        &["--addr", "127.0.0.1:0", "--snapshot", path_s],
        Duration::from_secs(10),
    );
    assert_eq!(status.code(), Some(1));
    assert!(stderr.contains("bad magic"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn redis_cli_and_redis_benchmark_run_against_it() {
    let _heavy = support::heavy();
    if !support::tool("redis-cli") || !support::tool("redis-benchmark") {
        return;
    }
    let target = Target::kv(&[]);
    let port = target.addr().port().to_string();
    let cli = |args: &[&str]| {
        let out = Command::new("redis-cli")
            .args(["-p", &port])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(cli(&["SET", "greeting", "hello"]), "OK");
    assert_eq!(cli(&["GET", "greeting"]), "hello");
    assert!(cli(&["-3", "HELLO", "3"]).lines().count() > 5);
    assert!(cli(&["INFO", "replication"]).contains("role:master"));
    let out = Command::new("redis-benchmark")
        .args(["-p", &port, "-q", "-n", "2000", "-c", "10", "-P", "4"])
        .args([
            "-t",
            "ping,set,get,incr,lpush,rpush,lpop,rpop,hset,lrange,mset",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for test in [
        "PING_INLINE",
        "SET",
        "GET",
        "INCR",
        "LPUSH",
        "RPOP",
        "HSET",
        "LRANGE_100",
        "MSET",
    ] {
        assert!(
            text.lines()
                .any(|l| l.contains(test) && l.contains("requests per second")),
            "{test} missing from:\n{text}"
        );
    }
}

#[test]
fn python_redis_package_works_in_both_protocols() {
    let _heavy = support::heavy();
    let has = Command::new("python3")
        .args(["-c", "import redis"])
        .status()
        .is_ok_and(|s| s.success());
    if !has {
        assert!(
            std::env::var("REQUIRE_ALL").as_deref() != Ok("1"),
            "the Python redis package is required (REQUIRE_ALL=1)"
        );
        eprintln!("skipped: the Python redis package is not installed");
        return;
    }
    let script = r#"
import sys, redis
port = int(sys.argv[1])
for proto in (2, 3):
    r = redis.Redis(port=port, protocol=proto, password="pw", client_name="py")
    r.flushall()
    assert r.set("a", "1") is True
    assert r.get("a") == b"1"
    assert r.incr("a") == 2
    r.hset("h", mapping={"f": "1", "g": "2"})
    assert r.hgetall("h") == {b"f": b"1", b"g": b"2"}, r.hgetall("h")
    r.rpush("l", "x", "y")
    assert r.lrange("l", 0, -1) == [b"x", b"y"]
    r.set("t", "v", ex=100)
    assert 99 <= r.ttl("t") <= 100
    p = r.pipeline()
    p.set("p", 1).incr("p").get("p")
    assert p.execute() == [True, 2, b"2"]
    assert r.info("replication")["role"] == "master"
    assert r.client_getname() in ("py", b"py")
    try:
        r.lpush("a", "x")
        raise SystemExit("no WRONGTYPE")
    except redis.ResponseError as e:
        assert str(e).startswith("WRONGTYPE")
print("ok")
"#;
    for target in both(&["--requirepass", "pw"]) {
        let out = Command::new("python3")
            .args(["-c", script, &target.addr().port().to_string()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}{}",
            target.name(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn redis_cli_talks_to_it_over_tls() {
    let _heavy = support::heavy();
    if !support::tool("redis-cli") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("kv-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    let server = support::Server::start(
        "kv_server",
        &[
            "--addr",
            "127.0.0.1:0",
            "--tls-addr",
            "127.0.0.1:0",
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
        2,
    );
    let tls_port = server.listening[1].rsplit(':').next().unwrap().to_string();
    let cli = |args: &[&str]| {
        let out = Command::new("redis-cli")
            .args(["-h", "localhost", "-p", &tls_port, "--tls", "--cacert"])
            .arg(&cert)
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(cli(&["SET", "secret", "kept"]), "OK");
    assert_eq!(cli(&["GET", "secret"]), "kept");
    let mut plain = Client::connect(server.addr());
    assert_eq!(plain.call(&["GET", "secret"]), bulk("kept"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Ours alone (our flag): one client more than `--max-clients` is told
/// why and closed; the others carry on.
#[test]
fn clients_over_the_limit_are_refused_with_redis_s_error() {
    let target = Target::kv(&["--max-clients", "2"]);
    let mut a = target.client();
    let mut b = target.client();
    assert_eq!(a.call(&["PING"]), Value::Simple("PONG".into()));
    assert_eq!(b.call(&["PING"]), Value::Simple("PONG".into()));
    let mut c = target.client();
    assert_eq!(
        c.read(),
        Value::Error("ERR max number of clients reached".into())
    );
    assert!(c.try_read().is_none());
    assert_eq!(a.call(&["PING"]), Value::Simple("PONG".into()));
}

/// From an outside review, ours alone: a client that has not
/// authenticated is held to small commands (it could make the server hold
/// `--max-bulk` per connection), and APPEND cannot grow a string past
/// `--max-bulk`.
#[test]
fn strangers_send_small_commands_and_append_is_bounded() {
    let _heavy = support::heavy();
    let server = support::Server::start(
        "kv_server",
        &[
            "--addr",
            "127.0.0.1:0",
            "--requirepass",
            "sekret",
            "--max-bulk",
            "1mb",
        ],
        1,
    );
    let mut stranger = Client::connect(server.addr());
    stranger.send_raw(b"*1\r\n$500000000\r\n");
    assert!(
        err_starts(&stranger.read(), "ERR Protocol error"),
        "a big bulk before AUTH"
    );
    assert!(stranger.try_read().is_none(), "closed after the error");
    let mut many = Client::connect(server.addr());
    many.send_raw(b"*100\r\n");
    assert!(
        err_starts(&many.read(), "ERR Protocol error"),
        "many arguments before AUTH"
    );
    let mut c = Client::connect(server.addr());
    assert_eq!(c.call(&["AUTH", "sekret"]), ok());
    let big = "x".repeat(900_000);
    assert_eq!(c.call(&["SET", "ap", &big]), ok());
    assert_eq!(
        c.call(&["APPEND", "ap", &big]),
        Value::Error("ERR string exceeds maximum allowed size (proto-max-bulk-len)".into())
    );
    assert_eq!(c.call(&["STRLEN", "ap"]), int(900_000));
}

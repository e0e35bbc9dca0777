//! Telling pub/sub pushes from replies: RESP3 marks them (`>`), RESP2 sends
//! them as plain arrays whose first element names their kind.

use crate::codec::resp::Value;

/// A pub/sub push, taken apart.
#[derive(Debug, PartialEq)]
pub(crate) enum Push {
    /// `message CHANNEL PAYLOAD`, or `pmessage PATTERN CHANNEL PAYLOAD`
    /// (and Redis 7's sharded `smessage`).
    Message {
        channel: Vec<u8>,
        pattern: Option<Vec<u8>>,
        payload: Vec<u8>,
    },
    /// `subscribe`, `unsubscribe`, `psubscribe`, `punsubscribe` (and the
    /// sharded ones): a confirmation, with how many subscriptions the
    /// connection now holds.
    Confirmation { count: i64 },
    /// A RESP3 push of another kind (client-side caching's `invalidate`).
    Other,
}

/// `value` as a push, if it is one. With RESP2 an array counts only while
/// the connection is subscribed (`subscribed`), since outside that mode an
/// ordinary reply may be an array that starts with `"message"`.
pub(crate) fn classify(value: Value, subscribed: bool) -> Result<Push, Value> {
    let items = match value {
        Value::Push(items) => items,
        Value::Array(items) if subscribed && is_pubsub_kind(items.first()) => items,
        other => return Err(other),
    };
    let mut it = items.into_iter();
    let kind = it.next().and_then(bytes).unwrap_or_default();
    let mut next = || it.next().and_then(bytes);
    Ok(match kind.as_slice() {
        b"message" | b"smessage" => match (next(), next()) {
            (Some(channel), Some(payload)) => Push::Message {
                channel,
                pattern: None,
                payload,
            },
            _ => Push::Other,
        },
        b"pmessage" => match (next(), next(), next()) {
            (Some(pattern), Some(channel), Some(payload)) => Push::Message {
                channel,
                pattern: Some(pattern),
                payload,
            },
            _ => Push::Other,
        },
        k if CONFIRMATIONS.contains(&k) => {
            let _channel = it.next();
            match it.next() {
                Some(Value::Integer(count)) => Push::Confirmation { count },
                _ => Push::Other,
            }
        }
        _ => Push::Other,
    })
}

const CONFIRMATIONS: [&[u8]; 6] = [
    b"subscribe",
    b"unsubscribe",
    b"psubscribe",
    b"punsubscribe",
    b"ssubscribe",
    b"sunsubscribe",
];

fn is_pubsub_kind(first: Option<&Value>) -> bool {
    let Some(kind) = first.and_then(Value::as_bytes) else {
        return false;
    };
    matches!(kind, b"message" | b"pmessage" | b"smessage") || CONFIRMATIONS.contains(&kind)
}

fn bytes(value: Value) -> Option<Vec<u8>> {
    match value {
        Value::Bulk(b) => Some(b),
        Value::Simple(s) => Some(s.into_bytes()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::Bulk(s.as_bytes().to_vec())
    }

    #[test]
    fn resp2_message_arrays_are_pushes_only_when_subscribed() {
        let message = Value::Array(vec![bulk("message"), bulk("ch"), bulk("hi")]);
        assert_eq!(
            classify(message.clone(), true),
            Ok(Push::Message {
                channel: b"ch".to_vec(),
                pattern: None,
                payload: b"hi".to_vec()
            })
        );
        // LRANGE of a list that happens to start with "message".
        assert_eq!(classify(message.clone(), false), Err(message));
    }

    #[test]
    fn pmessage_carries_its_pattern_and_resp3_pushes_need_no_mode() {
        let push = Value::Push(vec![bulk("pmessage"), bulk("c*"), bulk("ch"), bulk("x")]);
        assert_eq!(
            classify(push, false),
            Ok(Push::Message {
                channel: b"ch".to_vec(),
                pattern: Some(b"c*".to_vec()),
                payload: b"x".to_vec()
            })
        );
    }

    #[test]
    fn confirmations_report_the_count_and_pong_is_a_reply() {
        let sub = Value::Array(vec![bulk("subscribe"), bulk("ch"), Value::Integer(2)]);
        assert_eq!(classify(sub, true), Ok(Push::Confirmation { count: 2 }));
        let unsub_none = Value::Array(vec![bulk("unsubscribe"), Value::Null, Value::Integer(0)]);
        assert_eq!(
            classify(unsub_none, true),
            Ok(Push::Confirmation { count: 0 })
        );
        // PING while subscribed (RESP2) is answered ["pong", ""]: a reply.
        let pong = Value::Array(vec![bulk("pong"), bulk("")]);
        assert_eq!(classify(pong.clone(), true), Err(pong));
    }
}

//! The duration and size parsers every example shares (`examples/common`).

#[path = "../examples/common/mod.rs"]
mod common;

use std::time::Duration;

#[test]
fn durations_take_the_usual_units() {
    assert_eq!(common::parse_duration("30s"), Ok(Duration::from_secs(30)));
    assert_eq!(
        common::parse_duration("500ms"),
        Ok(Duration::from_millis(500))
    );
    assert_eq!(common::parse_duration("2m"), Ok(Duration::from_secs(120)));
    assert_eq!(common::parse_duration("1h"), Ok(Duration::from_secs(3600)));
    assert_eq!(
        common::parse_duration("250us"),
        Ok(Duration::from_micros(250))
    );
    assert_eq!(
        common::parse_duration("1.5s"),
        Ok(Duration::from_millis(1500))
    );
    assert_eq!(
        common::parse_duration("7"),
        Ok(Duration::from_secs(7)),
        "a bare number is seconds"
    );
}

#[test]
fn bad_durations_say_why() {
    for bad in ["", "ten", "5 parsecs", "-1s", "1e999s", "s"] {
        assert!(
            common::parse_duration(bad).is_err(),
            "{bad:?} should not parse"
        );
    }
}

#[test]
fn optional_durations_can_be_off() {
    assert_eq!(common::parse_optional_duration("off"), Ok(None));
    assert_eq!(common::parse_optional_duration("0"), Ok(None));
    assert_eq!(
        common::parse_optional_duration("5s"),
        Ok(Some(Duration::from_secs(5)))
    );
}

#[test]
fn sizes_take_binary_and_decimal_units() {
    assert_eq!(common::parse_size("4MiB"), Ok(4 << 20));
    assert_eq!(common::parse_size("64KiB"), Ok(64 << 10));
    assert_eq!(common::parse_size("1GiB"), Ok(1 << 30));
    assert_eq!(common::parse_size("1024"), Ok(1024));
    assert_eq!(common::parse_size("512B"), Ok(512));
    assert_eq!(common::parse_size("10KB"), Ok(10_000));
    assert_eq!(common::parse_size("2MB"), Ok(2_000_000));
    assert_eq!(common::parse_size("1.5KiB"), Ok(1536));
    assert_eq!(
        common::parse_size("4mib"),
        Ok(4 << 20),
        "units are case-insensitive"
    );
}

#[test]
fn bad_sizes_say_why() {
    for bad in ["", "1.5", "-3", "3 furlongs", "KiB", "1e30GiB"] {
        assert!(common::parse_size(bad).is_err(), "{bad:?} should not parse");
    }
}

//! The calculator's language, tested directly (`examples/calc_server/calc.rs`).
//! The server is tested over TCP and UDP in `tests/small_servers.rs`.

#[path = "../examples/calc_server/calc.rs"]
mod calc;

use calc::answer;

#[test]
fn arithmetic_follows_precedence_and_associativity() {
    for (expression, expected) in [
        ("5 + 3", "8"),
        ("7 / 2", "3.5"),
        ("2 + 3 * 4", "14"),
        ("(2 + 3) * 4", "20"),
        ("10 - 4 - 3", "3"),
        ("100 / 10 / 5", "2"),
        ("-3 * -3", "9"),
        ("--4", "4"),
        ("-(2 + 3)", "-5"),
        ("+7", "7"),
        ("0.1 + 0.2", "0.30000000000000004"),
        ("1e3 + 2.5E-1", "1000.25"),
        ("1.5e+2", "150"),
        (".5 * 4", "2"),
        ("3.", "3"),
        ("1 / 3", "0.3333333333333333"),
        ("2 * 0.5", "1"),
        ("0 * -1", "0"),
        ("  ( ( 1 ) )  ", "1"),
        ("1e21", "1000000000000000000000"),
        ("9007199254740993", "9007199254740992"),
    ] {
        assert_eq!(answer(expression), expected, "{expression}");
    }
}

#[test]
fn bad_expressions_get_an_error_never_a_panic() {
    let deep_open = "(".repeat(10_000);
    let deep_minus = "-".repeat(10_000) + "1";
    for expression in [
        "",
        "   ",
        "1 / 0",
        "1 / (2 - 2)",
        "5 +",
        "* 5",
        "2 3",
        "(1 + 2",
        "1 + 2)",
        "()",
        "abc",
        "1 ^ 2",
        "1e",
        "1e+",
        ".",
        "1..2",
        "1e999",
        "1e308 * 10",
        "__import__('os').system('rm -rf /')",
        "1; 2",
        "0x10",
        "1,5",
        "\u{0}",
        deep_open.as_str(),
        deep_minus.as_str(),
    ] {
        let reply = answer(expression);
        assert!(
            reply.starts_with("error: "),
            "{expression:?} gave {reply:?}"
        );
    }
}

#[test]
fn errors_say_what_went_wrong() {
    assert_eq!(answer("1 / 0"), "error: division by zero");
    assert_eq!(answer(""), "error: empty expression");
    assert_eq!(answer("2 $ 3"), "error: unexpected '$' at position 3");
    assert_eq!(answer("(1 + 2"), "error: missing ')'");
    assert_eq!(
        answer("1e308 * 10"),
        "error: the result is not a finite number"
    );
}

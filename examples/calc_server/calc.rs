//! The calculator's language: `+ - * /`, unary minus (and plus),
//! parentheses, and numbers written as integers, decimals or in scientific
//! notation, all computed as 64-bit floats. A small recursive-descent parser
//! that evaluates as it parses; nothing is ever handed to a general-purpose
//! evaluator.
//!
//! ```text
//! expr    := term   (('+' | '-') term)*
//! term    := unary  (('*' | '/') unary)*
//! unary   := ('-' | '+') unary | primary
//! primary := number | '(' expr ')'
//! number  := digits ['.' digits] [('e' | 'E') ['+' | '-'] digits]   (or '.' digits ...)
//! ```

/// Parentheses and unary signs may nest this deep; deeper is an error, not
/// a stack overflow.
const MAX_DEPTH: usize = 100;

/// Evaluates `text`, returning the answer as the server writes it: `8`,
/// `3.5`, `0.30000000000000004`, or `error: ...`.
pub fn answer(text: &str) -> String {
    match evaluate(text) {
        Ok(value) => format_number(value),
        Err(e) => format!("error: {e}"),
    }
}

/// Whole results without a decimal point, others in the shortest form that
/// reads back to the same float (Rust's `Display` for `f64`).
pub fn format_number(value: f64) -> String {
    if value == 0.0 {
        "0".to_string() // not "-0"
    } else {
        value.to_string()
    }
}

/// Evaluates an expression.
pub fn evaluate(text: &str) -> Result<f64, String> {
    let mut parser = Parser {
        text: text.as_bytes(),
        pos: 0,
        depth: 0,
    };
    parser.skip_spaces();
    if parser.pos == parser.text.len() {
        return Err("empty expression".into());
    }
    let value = parser.expr()?;
    parser.skip_spaces();
    if let Some(&c) = parser.text.get(parser.pos) {
        return Err(format!(
            "unexpected {} at position {}",
            describe(c),
            parser.pos + 1
        ));
    }
    if !value.is_finite() {
        return Err("the result is not a finite number".into());
    }
    Ok(value)
}

struct Parser<'a> {
    text: &'a [u8],
    pos: usize,
    depth: usize,
}

fn describe(c: u8) -> String {
    if c.is_ascii_graphic() {
        format!("'{}'", c as char)
    } else {
        format!("byte 0x{c:02x}")
    }
}

impl Parser<'_> {
    fn skip_spaces(&mut self) {
        while self
            .text
            .get(self.pos)
            .is_some_and(|c| c.is_ascii_whitespace())
        {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_spaces();
        self.text.get(self.pos).copied()
    }

    fn expr(&mut self) -> Result<f64, String> {
        let mut value = self.term()?;
        while let Some(op @ (b'+' | b'-')) = self.peek() {
            self.pos += 1;
            let rhs = self.term()?;
            value = if op == b'+' { value + rhs } else { value - rhs };
        }
        Ok(value)
    }

    fn term(&mut self) -> Result<f64, String> {
        let mut value = self.unary()?;
        while let Some(op @ (b'*' | b'/')) = self.peek() {
            self.pos += 1;
            let rhs = self.unary()?;
            if op == b'*' {
                value *= rhs;
            } else if rhs == 0.0 {
                return Err("division by zero".into());
            } else {
                value /= rhs;
            }
        }
        Ok(value)
    }

    fn unary(&mut self) -> Result<f64, String> {
        match self.peek() {
            Some(sign @ (b'-' | b'+')) => {
                self.pos += 1;
                self.nested(|p| p.unary())
                    .map(|v| if sign == b'-' { -v } else { v })
            }
            _ => self.primary(),
        }
    }

    fn primary(&mut self) -> Result<f64, String> {
        match self.peek() {
            Some(b'(') => {
                self.pos += 1;
                let value = self.nested(|p| p.expr())?;
                match self.peek() {
                    Some(b')') => {
                        self.pos += 1;
                        Ok(value)
                    }
                    Some(c) => Err(format!(
                        "expected ')' but found {} at position {}",
                        describe(c),
                        self.pos + 1
                    )),
                    None => Err("missing ')'".into()),
                }
            }
            Some(c) if c.is_ascii_digit() || c == b'.' => self.number(),
            Some(c) => Err(format!(
                "unexpected {} at position {}",
                describe(c),
                self.pos + 1
            )),
            None => Err("the expression ends where a number was expected".into()),
        }
    }

    fn nested(&mut self, f: impl FnOnce(&mut Self) -> Result<f64, String>) -> Result<f64, String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(format!("nested more than {MAX_DEPTH} levels deep"));
        }
        let result = f(self);
        self.depth -= 1;
        result
    }

    fn number(&mut self) -> Result<f64, String> {
        let start = self.pos;
        let digits = |p: &mut Self| {
            let from = p.pos;
            while p.text.get(p.pos).is_some_and(u8::is_ascii_digit) {
                p.pos += 1;
            }
            p.pos - from
        };
        let mut count = digits(self);
        if self.text.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            count += digits(self);
        }
        if count == 0 {
            return Err(format!("a lone '.' at position {}", start + 1));
        }
        if let Some(b'e' | b'E') = self.text.get(self.pos) {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.text.get(self.pos) {
                self.pos += 1;
            }
            if digits(self) == 0 {
                return Err(format!(
                    "an exponent without digits at position {}",
                    self.pos + 1
                ));
            }
        }
        let literal = std::str::from_utf8(&self.text[start..self.pos]).unwrap_or_default();
        let value: f64 = literal
            .parse()
            .map_err(|_| format!("'{literal}' is not a number"))?;
        if !value.is_finite() {
            return Err(format!("{literal} is too large"));
        }
        Ok(value)
    }
}

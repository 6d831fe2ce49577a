//! A one-pass JSON scanner for the list filter. It checks that text is JSON (RFC 8259:
//! grammar, string escapes, no control characters, bounded nesting) while walking it, and
//! tells where each value starts and ends; only the strings a caller asks for are read
//! (and decoded only when they hold escapes). Nothing is copied or allocated on the way.

use std::borrow::Cow;
use std::ops::Range;

/// Deepest nesting of arrays and objects accepted (serde_json's own limit).
pub const MAX_DEPTH: u32 = 128;

/// Bytes that end a run of plain string content: the quote, the backslash, and the
/// control characters (not allowed unescaped).
const STRING_STOP: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// The text is not JSON (or nests too deep).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotJson;

/// A string as written, between its quotes.
#[derive(Debug, Clone, Copy)]
pub struct JsonStr<'a> {
    /// With the quotes.
    quoted: &'a str,
    escaped: bool,
}

impl<'a> JsonStr<'a> {
    /// The string's value; `None` if an escape does not decode (a lone surrogate).
    pub fn decode(&self) -> Option<Cow<'a, str>> {
        if self.escaped {
            serde_json::from_str::<String>(self.quoted)
                .ok()
                .map(Cow::Owned)
        } else {
            Some(Cow::Borrowed(&self.quoted[1..self.quoted.len() - 1]))
        }
    }

    /// Whether the string's value is `s`.
    pub fn is(&self, s: &str) -> bool {
        if self.escaped {
            self.decode().is_some_and(|d| d == s)
        } else {
            &self.quoted[1..self.quoted.len() - 1] == s
        }
    }
}

/// Skips plain string content; returns a position at or before the first stop byte (`"`,
/// `\\`, or a control character) and past no stop byte, for the byte-wise loop to finish.
/// Short runs (most keys and values) go eight bytes at a time; a run longer than
/// [`SHORT_RUN`] bytes is searched with `memchr`'s vectorised search for the quote and the
/// backslash, and the bytes before that are checked for control characters in blocks the
/// compiler vectorises. A 60 KB argument costs about a quarter of the word-wise loop.
fn skip_plain(bytes: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Flags (high bit) bytes of `x` below `n` (n <= 0x80). Borrows only run upwards from
    // a flagged byte, so a word without stop bytes has no flag.
    let below = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x & HIGH;
    for _ in 0..SHORT_RUN / 8 {
        let Some(word) = bytes.get(i..i + 8) else {
            return i;
        };
        let mut chunk = [0u8; 8];
        chunk.copy_from_slice(word);
        let x = u64::from_le_bytes(chunk);
        let stops = below(x, 0x20)
            | below(x ^ (ONES * u64::from(b'"')), 1)
            | below(x ^ (ONES * u64::from(b'\\')), 1);
        if stops != 0 {
            return i;
        }
        i += 8;
    }
    let rest = bytes.get(i..).unwrap_or_default();
    let end = memchr::memchr2(b'"', b'\\', rest).unwrap_or(rest.len());
    let run = rest.get(..end).unwrap_or_default();
    i + first_control(run).unwrap_or(end)
}

/// Plain runs up to this many bytes are skipped a word at a time.
const SHORT_RUN: usize = 16;

/// The position of the first control character (below 0x20) in `run`.
fn first_control(run: &[u8]) -> Option<usize> {
    const BLOCK: usize = 32;
    let is_control = |b: &u8| *b < 0x20;
    let mut blocks = run.chunks_exact(BLOCK);
    let mut at = 0;
    for block in &mut blocks {
        // A fixed-size block with no early exit inside, so that it compiles to vector
        // compares rather than a branch per byte.
        let mut fixed = [0u8; BLOCK];
        fixed.copy_from_slice(block); // `chunks_exact`: always BLOCK bytes
        if fixed
            .iter()
            .fold(0u8, |seen, b| seen | u8::from(is_control(b)))
            != 0
        {
            return block.iter().position(is_control).map(|k| at + k);
        }
        at += BLOCK;
    }
    blocks
        .remainder()
        .iter()
        .position(is_control)
        .map(|k| at + k)
}

pub struct Scanner<'a> {
    text: &'a str,
    pos: usize,
    depth: u32,
}

impl<'a> Scanner<'a> {
    pub fn new(text: &'a str) -> Scanner<'a> {
        Scanner::at(text, 0)
    }

    /// A scanner starting at byte `pos` of `text` (the start of a value found earlier).
    pub fn at(text: &'a str, pos: usize) -> Scanner<'a> {
        Scanner {
            text,
            pos,
            depth: 0,
        }
    }

    pub fn text(&self) -> &'a str {
        self.text
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    fn byte(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    /// The first byte of the next value, after white space.
    pub fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.byte()
    }

    fn skip_ws(&mut self) {
        let bytes = self.text.as_bytes();
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    /// Only white space is left.
    pub fn at_end(&mut self) -> bool {
        self.skip_ws();
        self.pos == self.text.len()
    }

    fn eat(&mut self, byte: u8) -> Result<(), NotJson> {
        self.skip_ws();
        if self.byte() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(NotJson)
        }
    }

    /// Skips one value of any kind; returns where it is.
    pub fn value(&mut self) -> Result<Range<usize>, NotJson> {
        self.skip_ws();
        let start = self.pos;
        match self.byte() {
            Some(b'{') => {
                self.object(|s, _| s.value().map(drop))?;
            }
            Some(b'[') => {
                self.array(|s| s.value().map(drop))?;
            }
            Some(b'"') => {
                self.string()?;
            }
            Some(b't') => self.literal("true")?,
            Some(b'f') => self.literal("false")?,
            Some(b'n') => self.literal("null")?,
            Some(b'-' | b'0'..=b'9') => self.number()?,
            _ => return Err(NotJson),
        }
        Ok(start..self.pos)
    }

    /// Walks an object: `member` is called with each key, the scanner placed before the
    /// member's value, which it must consume. Returns where the object is.
    pub fn object<E: From<NotJson>>(
        &mut self,
        mut member: impl FnMut(&mut Self, JsonStr<'a>) -> Result<(), E>,
    ) -> Result<Range<usize>, E> {
        self.skip_ws();
        let start = self.pos;
        self.eat(b'{')?;
        self.descend()?;
        if self.peek() == Some(b'}') {
            self.pos += 1;
        } else {
            loop {
                self.skip_ws();
                let key = self.string()?;
                self.eat(b':')?;
                member(self, key)?;
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(b'}') => {
                        self.pos += 1;
                        break;
                    }
                    _ => return Err(NotJson.into()),
                }
            }
        }
        self.depth -= 1;
        Ok(start..self.pos)
    }

    /// Walks an array: `element` is called with the scanner placed before each element,
    /// which it must consume. Returns where the array is.
    pub fn array<E: From<NotJson>>(
        &mut self,
        mut element: impl FnMut(&mut Self) -> Result<(), E>,
    ) -> Result<Range<usize>, E> {
        self.skip_ws();
        let start = self.pos;
        self.eat(b'[')?;
        self.descend()?;
        if self.peek() == Some(b']') {
            self.pos += 1;
        } else {
            loop {
                element(self)?;
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(b']') => {
                        self.pos += 1;
                        break;
                    }
                    _ => return Err(NotJson.into()),
                }
            }
        }
        self.depth -= 1;
        Ok(start..self.pos)
    }

    fn descend(&mut self) -> Result<(), NotJson> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(NotJson);
        }
        Ok(())
    }

    /// Reads a string at the cursor.
    pub fn string(&mut self) -> Result<JsonStr<'a>, NotJson> {
        self.skip_ws();
        let start = self.pos;
        if self.byte() != Some(b'"') {
            return Err(NotJson);
        }
        let bytes = self.text.as_bytes();
        let mut i = start + 1;
        let mut escaped = false;
        loop {
            i = skip_plain(bytes, i);
            while bytes.get(i).is_some_and(|&b| !STRING_STOP[b as usize]) {
                i += 1;
            }
            match bytes.get(i) {
                Some(b'"') => break,
                Some(b'\\') => {
                    escaped = true;
                    match bytes.get(i + 1) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                        Some(b'u') => {
                            let hex = bytes.get(i + 2..i + 6).ok_or(NotJson)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return Err(NotJson);
                            }
                            i += 6;
                        }
                        _ => return Err(NotJson),
                    }
                }
                Some(&c) if c < 0x20 => return Err(NotJson),
                Some(_) => i += 1,
                None => return Err(NotJson),
            }
        }
        self.pos = i + 1;
        Ok(JsonStr {
            quoted: &self.text[start..self.pos],
            escaped,
        })
    }

    fn literal(&mut self, word: &str) -> Result<(), NotJson> {
        let rest = self.text.as_bytes().get(self.pos..).unwrap_or_default();
        if rest.starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(NotJson)
        }
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn number(&mut self) -> Result<(), NotJson> {
        if self.byte() == Some(b'-') {
            self.pos += 1;
        }
        match self.byte() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(NotJson),
        }
        if self.byte() == Some(b'.') {
            self.pos += 1;
            self.some_digits()?;
        }
        if let Some(b'e' | b'E') = self.byte() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.byte() {
                self.pos += 1;
            }
            self.some_digits()?;
        }
        Ok(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.byte() {
            self.pos += 1;
        }
    }

    fn some_digits(&mut self) -> Result<(), NotJson> {
        let before = self.pos;
        self.digits();
        if self.pos == before {
            return Err(NotJson);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(text: &str) -> bool {
        let mut s = Scanner::new(text);
        s.value().is_ok() && s.at_end()
    }

    #[test]
    fn accepts_exactly_what_serde_json_accepts() {
        let cases = [
            r#"{"a":[1,-2.5e+3,0,true,false,null,"x\"\\\/\b\f\n\r\t\u00e9"],"b":{}}"#,
            " [ ] ",
            r#""\ud83d\ude00""#,
            "0",
            "-0.0e0",
            "{\"k\" : { \"n\" :[ {} , [] ] } }",
            "01",
            "1.",
            ".5",
            "-",
            "1e",
            "+1",
            "[1,]",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "{a:1}",
            "[1 2]",
            "\"tab\there\"",
            "\"\\x\"",
            "\"\\u12\"",
            "tru",
            "nul",
            "[",
            "{\"a\":",
            "\"open",
            "[1] [2]",
            "",
            "   ",
            "'a'",
            "NaN",
        ];
        for text in cases {
            let serde = serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok();
            assert_eq!(whole(text), serde, "{text:?}");
        }
    }

    #[test]
    fn strings_end_at_the_right_byte_wherever_it_falls_in_a_word() {
        for len in (0..40).chain([63, 64, 65, 100, 257]) {
            for (at, stop) in (0..len)
                .flat_map(|at| [b'"', b'\\', 0x01, 0x1f, 0x7f, 0xc3].map(move |stop| (at, stop)))
            {
                let mut content = vec![b'a'; len];
                content[at] = stop;
                if stop == 0xc3 {
                    content.insert(at + 1, 0xa9); // é: not a stop
                }
                if stop == b'\\' && at + 1 < len {
                    content[at + 1] = b'n'; // a valid escape
                }
                let mut text = vec![b'"'];
                text.extend_from_slice(&content);
                text.extend_from_slice(b"\"x");
                let Ok(text) = std::str::from_utf8(&text) else {
                    continue;
                };
                let mut s = Scanner::new(text);
                let got = s.string().map(|_| s.pos());
                let expected = match stop {
                    b'"' => Ok(at + 2),
                    b'\\' if content.get(at + 1).is_some() => Ok(len + 2),
                    b'\\' => Err(NotJson),
                    0x01 | 0x1f => Err(NotJson),
                    _ => Ok(text.len() - 1),
                };
                assert_eq!(got, expected, "{text:?}");
            }
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let ok = "[".repeat(MAX_DEPTH as usize) + &"]".repeat(MAX_DEPTH as usize);
        assert!(whole(&ok));
        let deep = "[".repeat(MAX_DEPTH as usize + 1) + &"]".repeat(MAX_DEPTH as usize + 1);
        assert!(!whole(&deep));
        let unclosed = "[".repeat(100_000);
        assert!(!whole(&unclosed));
    }

    #[test]
    fn walks_members_and_elements_with_their_places() {
        let text = r#" {"id": 7, "na\u006de": "x", "list": [1, {"b": 2}]} "#;
        let mut s = Scanner::new(text);
        let mut seen = Vec::new();
        let span = s
            .object(|s, key| {
                let value = s.value()?;
                seen.push((key.decode().unwrap().into_owned(), &text[value]));
                Ok::<_, NotJson>(())
            })
            .unwrap();
        assert_eq!(&text[span], text.trim());
        assert_eq!(
            seen,
            vec![
                ("id".to_string(), "7"),
                ("name".to_string(), "\"x\""),
                ("list".to_string(), r#"[1, {"b": 2}]"#)
            ]
        );
    }

    #[test]
    fn strings_compare_by_value() {
        let mut s = Scanner::new(r#""na\u006de""#);
        let name = s.string().unwrap();
        assert!(name.is("name") && !name.is("nam"));
        let mut s = Scanner::new(r#""\ud800""#);
        let lone = s.string().unwrap();
        assert_eq!(lone.decode(), None, "a lone surrogate does not decode");
        assert!(!lone.is("\u{fffd}"));
    }
}

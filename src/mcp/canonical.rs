//! The canonical form of a tool definition and its digest, for pinned tool definitions
//! (`policy.pins`, `drawbridge pin`). Pure functions over JSON text.
//!
//! What is digested: the members of a `tools/list` item that tell a model (and a
//! reviewer) what the tool is — `name`, `title`, `description`, `inputSchema`,
//! `outputSchema` and `annotations` — and nothing else (`_meta`, `icons` and members
//! later protocol revisions add are left out, so a server's bookkeeping does not break a
//! pin). The canonical text is RFC 8785 (JCS): members sorted by their names' UTF-16
//! code units, no white space, strings with only `"`, `\` and control characters
//! escaped (the short escapes, else `\u00xx`), numbers written as ECMAScript writes the
//! IEEE 754 double they denote (`1.0` and `1e0` are `1`; integers beyond 2^53 lose
//! their low digits, as in every JavaScript client). The digest is SHA-256 of that text,
//! written `sha256:` and 64 lower-case hex digits.
//!
//! A definition that cannot be read as exactly one reading would give — a duplicate
//! member at any depth, a lone surrogate escape, a number beyond the double range — has
//! no digest: it matches no pin (fail closed).

use std::borrow::Cow;

use sha2::{Digest as _, Sha256};

use super::scan::{NotJson, Scanner};

/// The members of a tool definition that its digest covers.
pub const DIGESTED_MEMBERS: [&str; 6] = [
    "name",
    "title",
    "description",
    "inputSchema",
    "outputSchema",
    "annotations",
];

/// Why a definition has no canonical form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uncanonical {
    NotJson,
    /// Not an object.
    NotAnObject,
    /// A member twice in one object.
    DuplicateMember,
    /// A string escape that denotes no character (a lone surrogate).
    BadString,
    /// A number outside the double range.
    BadNumber,
}

impl From<NotJson> for Uncanonical {
    fn from(_: NotJson) -> Uncanonical {
        Uncanonical::NotJson
    }
}

/// The digest of a tool definition (one item of `result.tools`, as JSON text).
pub fn tool_digest(item: &str) -> Result<String, Uncanonical> {
    let canonical = canonical_tool(item)?;
    let hash = Sha256::digest(canonical.as_bytes());
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in hash {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 15)]));
    }
    Ok(out)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The canonical text of a tool definition: its digested members only, in JCS.
pub fn canonical_tool(item: &str) -> Result<String, Uncanonical> {
    let mut s = Scanner::new(item);
    if s.peek() != Some(b'{') {
        return Err(Uncanonical::NotAnObject);
    }
    let members = object_members(&mut s, |name| DIGESTED_MEMBERS.contains(&name))?;
    if !s.at_end() {
        return Err(Uncanonical::NotJson);
    }
    let mut out = String::with_capacity(item.len());
    write_object(members, &mut out);
    Ok(out)
}

/// The canonical (JCS) text of any JSON value.
pub fn canonical_json(text: &str) -> Result<String, Uncanonical> {
    let mut s = Scanner::new(text);
    let mut out = String::with_capacity(text.len());
    value(&mut s, &mut out)?;
    if !s.at_end() {
        return Err(Uncanonical::NotJson);
    }
    Ok(out)
}

/// The members of the object at the scanner that `wanted` names, each as (decoded
/// name, canonical value); a duplicate name (wanted or not) is an error.
fn object_members(
    s: &mut Scanner<'_>,
    wanted: impl Fn(&str) -> bool,
) -> Result<Vec<(String, String)>, Uncanonical> {
    let mut names: Vec<String> = Vec::new();
    let mut members: Vec<(String, String)> = Vec::new();
    s.object(|s, key| {
        let name = key.decode().ok_or(Uncanonical::BadString)?.into_owned();
        if names.contains(&name) {
            return Err(Uncanonical::DuplicateMember);
        }
        if wanted(&name) {
            let mut v = String::new();
            value(s, &mut v)?;
            members.push((name.clone(), v));
        } else {
            s.value()?;
        }
        names.push(name);
        Ok(())
    })?;
    Ok(members)
}

/// Members sorted by the UTF-16 code units of their names (RFC 8785 §3.2.3).
fn write_object(mut members: Vec<(String, String)>, out: &mut String) {
    members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
    out.push('{');
    for (i, (name, v)) in members.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(name, out);
        out.push(':');
        out.push_str(v);
    }
    out.push('}');
}

/// Writes the canonical form of the value at the scanner.
fn value(s: &mut Scanner<'_>, out: &mut String) -> Result<(), Uncanonical> {
    match s.peek() {
        Some(b'{') => {
            let members = object_members(s, |_| true)?;
            write_object(members, out);
        }
        Some(b'[') => {
            out.push('[');
            let mut first = true;
            s.array(|s| {
                if !std::mem::replace(&mut first, false) {
                    out.push(',');
                }
                value(s, out)
            })?;
            out.push(']');
        }
        Some(b'"') => {
            let text = s.string()?.decode().ok_or(Uncanonical::BadString)?;
            write_string(&text, out);
        }
        _ => {
            let span = s.value()?;
            let literal = &s.text()[span];
            match literal {
                "true" | "false" | "null" => out.push_str(literal),
                number => out.push_str(&es_number(number)?),
            }
        }
    }
    Ok(())
}

/// A string in JCS form: `"`, `\` and control characters escaped, nothing else.
fn write_string(text: &str, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let b = u32::from(c) as usize;
                out.push_str("\\u00");
                out.push(char::from(HEX[b >> 4]));
                out.push(char::from(HEX[b & 15]));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A JSON number (as the scanner checked it) written as ECMAScript's
/// `Number.prototype.toString` writes the double it denotes (RFC 8785 §3.2.2.3).
fn es_number(literal: &str) -> Result<Cow<'static, str>, Uncanonical> {
    let x: f64 = literal.parse().map_err(|_| Uncanonical::BadNumber)?;
    if !x.is_finite() {
        return Err(Uncanonical::BadNumber);
    }
    if x == 0.0 {
        return Ok(Cow::Borrowed("0"));
    }
    // Rust writes the shortest digits that read back as the same double.
    let sci = format!("{:e}", x.abs());
    let (mantissa, exp) = sci.split_once('e').ok_or(Uncanonical::BadNumber)?;
    let exp: i32 = exp.parse().map_err(|_| Uncanonical::BadNumber)?;
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let k = digits.len() as i32;
    let n = exp + 1;
    let mut out = String::new();
    if x < 0.0 {
        out.push('-');
    }
    if k <= n && n <= 21 {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', (n - k) as usize));
    } else if 0 < n && n <= 21 {
        out.push_str(&digits[..n as usize]);
        out.push('.');
        out.push_str(&digits[n as usize..]);
    } else if -6 < n && n <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-n) as usize));
        out.push_str(&digits);
    } else {
        out.push_str(&digits[..1]);
        if k > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if n - 1 < 0 { '-' } else { '+' });
        out.push_str(&(n - 1).abs().to_string());
    }
    Ok(Cow::Owned(out))
}

#[cfg(test)]
mod tests;

//! The common case of [`inspect`](super::inspect) without serde: one JSON-RPC object,
//! no escapes anywhere, plainly shaped. It walks the body once with [`Scanner`],
//! checking what the serde reading checks (JSON grammar, duplicate keys at every depth,
//! the id's kind, the method's type, the shape of `params`), and builds the same
//! [`RawMessage`].
//!
//! Whenever anything is out of the ordinary — not UTF-8, a backslash anywhere (so no
//! string needs decoding, and no escape can hide a duplicate key), a batch, a number that
//! could overflow a double, deep nesting, a member of an unexpected type, or any error at
//! all — it answers `None` and the serde reading decides. So it can only agree with it;
//! the tests check that it does, body for body.

use std::ops::Range;

use super::{RawMessage, VersionClaim};
use std::borrow::Cow;

use crate::mcp::scan::{JsonStr, NotJson, Scanner};

/// Deepest nesting walked here; deeper bodies go to the serde reading (whose limit
/// decides).
const MAX_DEPTH: u32 = 64;

/// Longest number walked here: the longest whose value a double can hold is far
/// shorter, so longer ones (or any with an exponent) go to the serde reading, which
/// refuses the ones that overflow.
const MAX_NUMBER_LEN: usize = 100;

/// Any reason to let the serde reading decide.
struct Defer;

impl From<NotJson> for Defer {
    fn from(_: NotJson) -> Defer {
        Defer
    }
}

/// The message of a single-object body, or `None` to let the serde reading decide.
pub(super) fn single_message(body: &[u8]) -> Option<RawMessage> {
    // memchr's vectorised search: on a 60 KB body about a ninth of `<[u8]>::contains`.
    if memchr::memchr(b'\\', body).is_some() {
        return None;
    }
    let text = std::str::from_utf8(body).ok()?;
    let mut scanner = Scanner::new(text);
    if scanner.peek() != Some(b'{') {
        return None;
    }
    let message = message(&mut scanner).ok()?;
    scanner.at_end().then_some(message)
}

fn message(s: &mut Scanner<'_>) -> Result<RawMessage, Defer> {
    let mut msg = RawMessage::default();
    let mut keys = Keys::default();
    s.object(|s, key| {
        let key = keys.insert(key)?;
        match key {
            "jsonrpc" => msg.version_ok = plain_string(s)? == "2.0",
            "id" => {
                let raw = checked(s, 1)?;
                let text = &s.text()[raw];
                if !text.starts_with(|c: char| c == '"' || c == '-' || c.is_ascii_digit()) {
                    return Err(Defer);
                }
                msg.id = Some(Box::from(text));
            }
            "method" => msg.method = Some(plain_string(s)?.to_string()),
            "params" => msg.params = Some(params(s)?),
            // Refused by the serde reading.
            "requestState" => return Err(Defer),
            "result" | "error" => {
                checked(s, 1)?;
                msg.has_result_or_error = true;
            }
            // Another spelling of a decided key: the serde reading refuses it.
            other if super::key_spelling_of(other, &super::MESSAGE_KEYS).is_some() => {
                return Err(Defer)
            }
            _ => {
                checked(s, 1)?;
            }
        }
        Ok(())
    })?;
    Ok(msg)
}

/// `params`: an object (keeping its `name`, `uri`, `taskId` and `requestState` strings
/// and `_meta`'s version), an array, or null.
fn params(s: &mut Scanner<'_>) -> Result<super::Params, Defer> {
    let mut params = super::Params::default();
    match s.peek() {
        Some(b'{') => {
            let mut keys = Keys::default();
            s.object(|s, key| {
                match keys.insert(key)? {
                    "name" => params.name = Some(plain_string(s)?.to_string()),
                    "uri" => params.uri = Some(plain_string(s)?.to_string()),
                    // Not a string: the serde reading refuses it.
                    "requestState" => params.request_state = Some(plain_string(s)?.to_string()),
                    "taskId" => params.task_id = Some(plain_string(s)?.to_string()),
                    "_meta" => params.version = meta(s)?,
                    other if super::key_spelling_of(other, &super::PARAMS_KEYS).is_some() => {
                        return Err(Defer)
                    }
                    _ => {
                        checked(s, 2)?;
                    }
                }
                Ok::<_, Defer>(())
            })?;
        }
        Some(b'[' | b'n') => {
            checked(s, 1)?;
        }
        _ => return Err(Defer),
    }
    Ok(params)
}

/// `params._meta`: the protocol version it names, if it is an object naming one.
fn meta(s: &mut Scanner<'_>) -> Result<VersionClaim, Defer> {
    if s.peek() != Some(b'{') {
        checked(s, 2)?;
        return Ok(VersionClaim::Absent);
    }
    let mut claim = VersionClaim::Absent;
    let mut keys = Keys::default();
    s.object(|s, key| {
        match keys.insert(key)? {
            super::PROTOCOL_VERSION_META_KEY => {
                claim = if s.peek() == Some(b'"') {
                    VersionClaim::Named(plain_string(s)?.to_string())
                } else {
                    checked(s, 3)?;
                    VersionClaim::NotAString
                };
            }
            // A task handle to open: read by the serde path only (it is rare).
            super::RELATED_TASK_META_KEY => return Err(Defer),
            other if super::key_spelling_of(other, &super::META_KEYS).is_some() => {
                return Err(Defer)
            }
            _ => {
                checked(s, 3)?;
            }
        }
        Ok::<_, Defer>(())
    })?;
    Ok(claim)
}

/// A string value (no escapes: the body has no backslash).
fn plain_string<'a>(s: &mut Scanner<'a>) -> Result<&'a str, Defer> {
    if s.peek() != Some(b'"') {
        return Err(Defer);
    }
    as_written(s.string()?)
}

/// A string's value as it stands in the body; one that needs decoding is deferred.
fn as_written(string: JsonStr<'_>) -> Result<&str, Defer> {
    match string.decode().ok_or(Defer)? {
        Cow::Borrowed(value) => Ok(value),
        Cow::Owned(_) => Err(Defer),
    }
}

/// Any value, `depth` levels down: duplicate keys refused at every level.
fn checked(s: &mut Scanner<'_>, depth: u32) -> Result<Range<usize>, Defer> {
    if depth > MAX_DEPTH {
        return Err(Defer);
    }
    match s.peek() {
        Some(b'{') => {
            let mut keys = Keys::default();
            Ok(s.object(|s, key| {
                keys.insert(key)?;
                checked(s, depth + 1).map(drop)
            })?)
        }
        Some(b'[') => Ok(s.array(|s| checked(s, depth + 1).map(drop))?),
        Some(b'-' | b'0'..=b'9') => {
            let range = s.value()?;
            let number = &s.text()[range.clone()];
            if number.len() > MAX_NUMBER_LEN || number.contains(['e', 'E']) {
                return Err(Defer);
            }
            Ok(range)
        }
        _ => Ok(s.value()?),
    }
}

/// The keys of one object so far; the first few without allocating, the rest hashed (so
/// that a wide object costs linear time).
#[derive(Default)]
struct Keys<'a> {
    first: [&'a str; 8],
    len: usize,
    more: std::collections::HashSet<&'a str>,
}

impl<'a> Keys<'a> {
    /// Records `key`; a repeat is left to the serde reading (which refuses it).
    fn insert(&mut self, key: JsonStr<'a>) -> Result<&'a str, Defer> {
        let key = as_written(key)?;
        let inline = self.len.min(self.first.len());
        if self.first[..inline].contains(&key) || self.more.contains(&key) {
            return Err(Defer);
        }
        match self.first.get_mut(self.len) {
            Some(slot) => *slot = key,
            None => {
                self.more.insert(key);
            }
        }
        self.len += 1;
        Ok(key)
    }
}

//! Step 3 of the request path: a POST body read strictly as JSON-RPC 2.0 (one message or
//! a batch) before anything is sent upstream. The result lists the operations it carries
//! — which tool, resource or prompt each message names — and keeps the ids so that the
//! gateway's own errors answer the right request.
//!
//! Strict, because the gateway and the upstream must never disagree about what is being
//! called: UTF-8 JSON only, nothing after the value, no duplicate object keys anywhere
//! (parsers that keep the first and parsers that keep the last would read different
//! calls), no member whose key differs from one the gateway decides on (`method`,
//! `params`, `name`, …) only by case (see [`key_spelling_of`]), `\u` escapes decoded
//! before judging, nesting bounded by serde_json's recursion
//! limit (128) so deep bodies fail instead of overflowing the stack. One pass over the
//! bytes: parsing, duplicate detection and target extraction happen together.
//!
//! It also reads `params.requestState` (MCP 2026-07-28 multi round-trip state) as a
//! decoded string, refusing any other type, a second one in any spelling, and a
//! `requestState` beside `params`: the handles step opens exactly the state the upstream
//! will read (see `mcp::handles`).
//!
//! Owns parsing and error-object rendering; it does not decide anything.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

/// One JSON-RPC message of a request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The id exactly as the client wrote it (`1`, `"abc"`); `None` for notifications.
    pub id: Option<Box<str>>,
    pub kind: MessageKind,
    /// `params.requestState` (MCP 2026-07-28 multi round-trip requests), decoded: a
    /// server-minted handle the client sends back, which the gateway must open for this
    /// caller before the upstream sees it (see `mcp::handles`). Any message may carry it
    /// here; where it is allowed is the handles step's decision.
    pub request_state: Option<Box<str>>,
    /// The protocol version the message names in its own body (MCP 2026-07-28's
    /// per-request `_meta`); always [`VersionClaim::Absent`] for a response.
    pub version_claim: VersionClaim,
    /// `params.taskId` when it is a string: the task a tasks-extension request is about,
    /// which its `Mcp-Name` header mirrors.
    pub task_id: Option<String>,
    /// `params._meta["io.modelcontextprotocol/related-task"].taskId`: the task a message
    /// says it belongs to (tasks extension), a server-minted handle opened like
    /// `taskId` (see `mcp::handles`).
    pub related_task: Option<String>,
}

/// `params._meta["io.modelcontextprotocol/protocolVersion"]`: how a request of MCP
/// 2026-07-28 or later names its protocol version, with no handshake before it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum VersionClaim {
    /// No `_meta` object in `params`, or one without the key: an older protocol's message.
    #[default]
    Absent,
    /// The version the body names.
    Named(String),
    /// The key is there, with a value that is not a string.
    NotAString,
}

/// The `_meta` key naming a request's protocol version (MCP 2026-07-28).
pub const PROTOCOL_VERSION_META_KEY: &str = "io.modelcontextprotocol/protocolVersion";

/// The `_meta` key naming the task a message belongs to (tasks extension).
pub const RELATED_TASK_META_KEY: &str = "io.modelcontextprotocol/related-task";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageKind {
    /// A request (has an id) or notification (has none) naming a method; `target` is the
    /// tool or prompt name (`tools/call`, `prompts/get`) or the resource URI
    /// (`resources/read`, `resources/subscribe`, `resources/unsubscribe`).
    Call {
        method: String,
        target: Option<String>,
    },
    /// A response to a request the server sent (sampling, elicitation, roots).
    Response,
}

/// What a request body contains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspected {
    pub messages: Vec<Message>,
    pub batch: bool,
}

impl Inspected {
    /// Whether some call is of a method the protocol version it names has removed
    /// (answered "method not found", 404, before anything else judges it).
    pub fn names_removed_method(&self) -> bool {
        self.messages
            .iter()
            .any(|m| match (&m.kind, &m.version_claim) {
                (MessageKind::Call { method, .. }, VersionClaim::Named(version)) => {
                    super::methods::removed_in(method, Some(version))
                }
                _ => false,
            })
    }

    /// Ids of the requests that expect an answer.
    pub fn request_ids(&self) -> impl Iterator<Item = &str> {
        self.messages
            .iter()
            .filter(|m| matches!(m.kind, MessageKind::Call { .. }))
            .filter_map(|m| m.id.as_deref())
    }
}

/// Why a body is not acceptable JSON-RPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Malformed {
    /// Not JSON at all, or JSON followed by anything (JSON-RPC code -32700).
    NotJson,
    /// JSON, but not a JSON-RPC 2.0 message or batch (code -32600).
    NotJsonRpc(&'static str),
    /// A method that names a target lacks it or has the wrong type (code -32602).
    InvalidParams(&'static str),
    /// Bytes an upstream could decode as something other than the UTF-8 the gateway
    /// reads: a byte order mark, UTF-16/32 (refused with 415).
    Encoding(&'static str),
}

/// Methods whose `params` name what they act on, and which member names it (from the
/// table of methods, which the policy judges by too).
fn target_member(method: &str) -> Option<&'static str> {
    Some(super::methods::lookup(method)?.target()?.member())
}

/// Reasons the visitors report; mapped back to [`Malformed`] by text, since serde errors
/// carry only a message. None of them contains request content.
const DUPLICATE_KEY: &str = "duplicate object key";
const NOT_OBJECT: &str = "a message that is not a JSON object";
const BAD_VERSION: &str = "a message without \"jsonrpc\": \"2.0\"";
const BAD_ID: &str = "an id that is not a string or number";
const NO_KIND: &str = "a message that is neither a request, a notification nor a response";
const EMPTY_BATCH: &str = "an empty batch";
const KEY_SPELLING: &str =
    "a member whose key differs only in case from one the gateway reads (e.g. \"Name\" beside \"name\")";
const BAD_TARGET: &str = "params lacks the string member naming the tool, prompt or resource";
const BAD_STATE: &str = "params.requestState is not a string";
const BAD_TASK_ID: &str = "params.taskId (or the related-task _meta's taskId) is not a string";
const MISPLACED_STATE: &str =
    "a requestState member outside params (it is read only as params.requestState)";
const REASONS: [&str; 8] = [
    DUPLICATE_KEY,
    MISPLACED_STATE,
    KEY_SPELLING,
    NOT_OBJECT,
    BAD_VERSION,
    BAD_ID,
    NO_KIND,
    EMPTY_BATCH,
];

/// The members of a message the gateway decides on (`requestState` is refused there, in
/// any spelling: a server that merged message members into `params` would read it).
const MESSAGE_KEYS: [&str; 7] = [
    "jsonrpc",
    "id",
    "method",
    "params",
    "result",
    "error",
    "requestState",
];
/// The members of `params` the gateway decides on: the target of a call (every
/// [`Target::member`](super::methods::Target::member)), the multi round-trip state,
/// `_meta`, whose protocol version decides which rules the request's headers follow,
/// and `taskId`, which `Mcp-Name` mirrors on the tasks methods.
pub(crate) const PARAMS_KEYS: [&str; 5] = ["name", "uri", "requestState", "_meta", "taskId"];
/// The members of `params._meta` the gateway decides on.
pub(crate) const META_KEYS: [&str; 2] = [PROTOCOL_VERSION_META_KEY, RELATED_TASK_META_KEY];

/// The decided key that `key` spells differently: equal under Unicode simple case
/// folding, not byte for byte. Upstreams that match keys case-insensitively (Go's
/// `encoding/json` folds `Name`, `NAME`, `ſ` U+017F as `s`, `K` U+212A as `k`) could
/// read such a member in place of the one the gateway judged. The decided keys are
/// ASCII, and the only other characters that fold to ASCII letters are U+017F and U+212A.
/// Both sides are folded: a decided key may have capitals (`protocolVersion`).
pub fn key_spelling_of(key: &str, decided: &[&'static str]) -> Option<&'static str> {
    decided
        .iter()
        .copied()
        .find(|d| key != *d && same_but_for_case(key, d))
}

/// Are `key` and `decided` equal under the folding [`key_spelling_of`] describes? Exact
/// for ASCII `decided`, the only kind the gateway (and argument rules, mostly) name.
pub fn same_but_for_case(key: &str, decided: &str) -> bool {
    let fold = |c: char| match c {
        '\u{17F}' => 's',
        '\u{212A}' => 'k',
        c => c.to_ascii_lowercase(),
    };
    // Folding maps a character to one of at most 3 bytes: a cheap first cut.
    key.len() >= decided.len()
        && key.len() <= 3 * decided.len()
        && key.chars().map(fold).eq(decided.chars().map(fold))
}

/// A body an upstream could decode other than as UTF-8: a byte order mark (which
/// body-parser and Python's `json.loads` strip), or NUL bytes among the first four
/// (from which `json.loads` guesses UTF-16 or UTF-32). None is JSON to the gateway
/// either; they are refused as an encoding, not a syntax, error.
fn foreign_encoding(body: &[u8]) -> Option<&'static str> {
    if body.starts_with(&[0xEF, 0xBB, 0xBF]) {
        Some("the body starts with a byte order mark")
    } else if body.starts_with(&[0xFE, 0xFF]) || body.starts_with(&[0xFF, 0xFE]) {
        Some("the body starts with a UTF-16 or UTF-32 byte order mark")
    } else if body.iter().take(4).any(|b| *b == 0) {
        Some("the body looks like UTF-16 or UTF-32 (NUL bytes)")
    } else {
        None
    }
}

/// Reads a body as a JSON-RPC message or batch.
pub fn inspect(body: &[u8]) -> Result<Inspected, Malformed> {
    if let Some(why) = foreign_encoding(body) {
        return Err(Malformed::Encoding(why));
    }
    match fast::single_message(body) {
        Some(message) => finish(vec![message], false),
        None => inspect_with_serde(body),
    }
}

/// The reading of every body; [`fast`] only takes plain single messages off its hands.
fn inspect_with_serde(body: &[u8]) -> Result<Inspected, Malformed> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed = Top
        .deserialize(&mut de)
        .and_then(|top| de.end().map(|()| top));
    match parsed {
        Ok(Top2::Single(m)) => finish(vec![m], false),
        Ok(Top2::Batch(ms)) => finish(ms, true),
        Err(e) if e.is_data() => {
            let text = e.to_string();
            if text.starts_with(BAD_TARGET) {
                return Err(Malformed::InvalidParams(BAD_TARGET));
            }
            if text.starts_with(BAD_STATE) {
                return Err(Malformed::InvalidParams(BAD_STATE));
            }
            if text.starts_with(BAD_TASK_ID) {
                return Err(Malformed::InvalidParams(BAD_TASK_ID));
            }
            let reason = REASONS
                .iter()
                .find(|r| text.starts_with(**r))
                .copied()
                .unwrap_or("a member with the wrong type");
            Err(Malformed::NotJsonRpc(reason))
        }
        Err(_) => Err(Malformed::NotJson),
    }
}

fn finish(raw: Vec<RawMessage>, batch: bool) -> Result<Inspected, Malformed> {
    let messages = raw
        .into_iter()
        .map(RawMessage::into_message)
        .collect::<Result<_, _>>()?;
    Ok(Inspected { messages, batch })
}

/// A JSON string, borrowed from the body when it has no escapes.
struct Text<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// Remembers the keys of one object and refuses a repeat. A few keys are compared in a
/// list; past that they are hashed, so an object with n members costs n lookups, not n²
/// comparisons (a 4 MiB body can hold hundreds of thousands of members).
#[derive(Default)]
struct KeySet<'de> {
    few: Vec<Cow<'de, str>>,
    many: std::collections::HashSet<Cow<'de, str>>,
}

/// Keys compared in a list before they are hashed.
const FEW_KEYS: usize = 16;

impl<'de> KeySet<'de> {
    fn insert<E: de::Error>(&mut self, key: Cow<'de, str>) -> Result<(), E> {
        if self.few.len() < FEW_KEYS {
            if self.few.contains(&key) {
                return Err(E::custom(DUPLICATE_KEY));
            }
            self.few.push(key);
            return Ok(());
        }
        if self.few.contains(&key) || !self.many.insert(key) {
            return Err(E::custom(DUPLICATE_KEY));
        }
        Ok(())
    }
}

/// Any JSON value, checked for duplicate keys at every depth and otherwise skipped.
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(CheckedVisitor)
    }
}

struct CheckedVisitor;

impl<'de> Visitor<'de> for CheckedVisitor {
    type Value = Checked;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        let mut keys = KeySet::default();
        while let Some(Text(key)) = map.next_key::<Text>()? {
            keys.insert(key)?;
            map.next_value::<Checked>()?;
        }
        Ok(Checked)
    }
}

/// `params`: checked like any value, keeping its top-level `name`, `uri`, `taskId` and
/// `requestState` strings and the protocol version its `_meta` names.
#[derive(Default)]
struct Params {
    name: Option<String>,
    uri: Option<String>,
    request_state: Option<String>,
    task_id: Option<String>,
    version: VersionClaim,
    related_task: Option<String>,
}

impl<'de> Deserialize<'de> for Params {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Params;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("params")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Params, A::Error> {
                CheckedVisitor.visit_seq(seq).map(|_| Params::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Params, A::Error> {
                let mut keys = KeySet::default();
                let mut params = Params::default();
                while let Some(Text(key)) = map.next_key::<Text>()? {
                    let slot = match key.as_ref() {
                        "name" => Some(&mut params.name),
                        "uri" => Some(&mut params.uri),
                        _ => None,
                    };
                    match slot {
                        // A non-string name stays `None` and fails target extraction.
                        Some(slot) => {
                            *slot = map.next_value::<StringOrOther>()?.0.map(Cow::into_owned)
                        }
                        None if key == "requestState" => {
                            let value = map.next_value::<StringOrOther>()?.0;
                            let value = value.ok_or_else(|| de::Error::custom(BAD_STATE))?;
                            params.request_state = Some(value.into_owned());
                        }
                        // A server-minted handle: one string, or the message is refused.
                        None if key == "taskId" => {
                            let value = map.next_value::<StringOrOther>()?.0;
                            let value = value.ok_or_else(|| de::Error::custom(BAD_TASK_ID))?;
                            params.task_id = Some(value.into_owned());
                        }
                        None if key == "_meta" => {
                            let meta = map.next_value::<Meta>()?;
                            params.version = meta.0;
                            params.related_task = meta.1;
                        }
                        None => {
                            if key_spelling_of(&key, &PARAMS_KEYS).is_some() {
                                return Err(de::Error::custom(KEY_SPELLING));
                            }
                            map.next_value::<Checked>()?;
                        }
                    }
                    keys.insert(key)?;
                }
                Ok(params)
            }
            fn visit_unit<E>(self) -> Result<Params, E> {
                Ok(Params::default())
            }
        }
        d.deserialize_any(V)
    }
}

/// `params._meta`: checked like any value, keeping the protocol version it names. A
/// `_meta` that is not an object names none.
struct Meta(VersionClaim, Option<String>);

impl<'de> Deserialize<'de> for Meta {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Meta;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("_meta")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Meta, A::Error> {
                let mut keys = KeySet::default();
                let mut claim = VersionClaim::Absent;
                let mut related = None;
                while let Some(Text(key)) = map.next_key::<Text>()? {
                    if key == PROTOCOL_VERSION_META_KEY {
                        claim = match map.next_value::<StringOrOther>()?.0 {
                            Some(version) => VersionClaim::Named(version.into_owned()),
                            None => VersionClaim::NotAString,
                        };
                    } else if key == RELATED_TASK_META_KEY {
                        related = Some(map.next_value::<RelatedTask>()?.0);
                    } else if key_spelling_of(&key, &META_KEYS).is_some() {
                        return Err(de::Error::custom(KEY_SPELLING));
                    } else {
                        map.next_value::<Checked>()?;
                    }
                    keys.insert(key)?;
                }
                Ok(Meta(claim, related))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Meta, A::Error> {
                CheckedVisitor
                    .visit_seq(seq)
                    .map(|_| Meta(VersionClaim::Absent, None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Meta, E> {
                Ok(Meta(VersionClaim::Absent, None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Meta, E> {
                Ok(Meta(VersionClaim::Absent, None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Meta, E> {
                Ok(Meta(VersionClaim::Absent, None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Meta, E> {
                Ok(Meta(VersionClaim::Absent, None))
            }
            fn visit_str<E>(self, _: &str) -> Result<Meta, E> {
                Ok(Meta(VersionClaim::Absent, None))
            }
            fn visit_unit<E>(self) -> Result<Meta, E> {
                Ok(Meta(VersionClaim::Absent, None))
            }
        }
        d.deserialize_any(V)
    }
}

/// The related-task `_meta` value: an object whose `taskId` is one string. Anything
/// else (not an object, no `taskId`, another type, another spelling of it) is refused:
/// the gateway must open the id the upstream reads.
struct RelatedTask(String);

impl<'de> Deserialize<'de> for RelatedTask {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RelatedTask;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("the related-task object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RelatedTask, A::Error> {
                let mut keys = KeySet::default();
                let mut id = None;
                while let Some(Text(key)) = map.next_key::<Text>()? {
                    if key == "taskId" {
                        let value = map.next_value::<StringOrOther>()?.0;
                        id = Some(value.ok_or_else(|| de::Error::custom(BAD_TASK_ID))?);
                    } else if key_spelling_of(&key, &["taskId"]).is_some() {
                        return Err(de::Error::custom(KEY_SPELLING));
                    } else {
                        map.next_value::<Checked>()?;
                    }
                    keys.insert(key)?;
                }
                let id = id.ok_or_else(|| de::Error::custom(BAD_TASK_ID))?;
                Ok(RelatedTask(id.into_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A string, or any other (checked) value.
struct StringOrOther<'de>(Option<Cow<'de, str>>);

impl<'de> Deserialize<'de> for StringOrOther<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StringOrOther<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(StringOrOther(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(StringOrOther(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(StringOrOther(Some(Cow::Owned(v))))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(StringOrOther(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(StringOrOther(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(StringOrOther(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(StringOrOther(None))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(StringOrOther(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                CheckedVisitor.visit_seq(seq).map(|_| StringOrOther(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                CheckedVisitor.visit_map(map).map(|_| StringOrOther(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// One message as parsed, before its shape is judged.
#[derive(Default)]
struct RawMessage {
    version_ok: bool,
    id: Option<Box<str>>,
    method: Option<String>,
    params: Option<Params>,
    has_result_or_error: bool,
}

impl RawMessage {
    fn into_message(self) -> Result<Message, Malformed> {
        if !self.version_ok {
            return Err(Malformed::NotJsonRpc(BAD_VERSION));
        }
        let mut params = self.params.unwrap_or_default();
        let request_state = params.request_state.take().map(Box::from);
        let task_id = params.task_id.take();
        let related_task = params.related_task.take();
        let (kind, version_claim) = match (self.method, self.has_result_or_error) {
            (Some(method), false) => {
                let target = match target_member(&method) {
                    None => None,
                    Some(member) => {
                        let value = if member == "name" {
                            params.name
                        } else {
                            params.uri
                        };
                        let named = match &params.version {
                            VersionClaim::Named(v) => Some(v.as_str()),
                            _ => None,
                        };
                        match value {
                            Some(value) => Some(value),
                            // A method the named revision removed has no target to read:
                            // the request path answers it "method not found".
                            None if super::methods::removed_in(&method, named) => None,
                            None => return Err(Malformed::InvalidParams(BAD_TARGET)),
                        }
                    }
                };
                (MessageKind::Call { method, target }, params.version)
            }
            (None, true) if self.id.is_some() => (MessageKind::Response, VersionClaim::Absent),
            _ => return Err(Malformed::NotJsonRpc(NO_KIND)),
        };
        let (task_id, related_task) = match kind {
            MessageKind::Call { .. } => (task_id, related_task),
            MessageKind::Response => (None, None),
        };
        Ok(Message {
            id: self.id,
            kind,
            request_state,
            version_claim,
            task_id,
            related_task,
        })
    }
}

struct MessageVisitor;

impl<'de> Visitor<'de> for MessageVisitor {
    type Value = RawMessage;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(NOT_OBJECT)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawMessage, A::Error> {
        let mut keys = KeySet::default();
        let mut msg = RawMessage::default();
        while let Some(Text(key)) = map.next_key::<Text>()? {
            match key.as_ref() {
                "jsonrpc" => {
                    msg.version_ok = map.next_value::<StringOrOther>()?.0.as_deref() == Some("2.0")
                }
                "id" => {
                    let raw: &RawValue = map.next_value()?;
                    let text = raw.get();
                    let scalar = text.starts_with('"')
                        || text.starts_with('-')
                        || text.starts_with(|c: char| c.is_ascii_digit());
                    if !scalar {
                        return Err(de::Error::custom(BAD_ID));
                    }
                    msg.id = Some(Box::from(text));
                }
                "method" => {
                    msg.method = map.next_value::<StringOrOther>()?.0.map(Cow::into_owned);
                    if msg.method.is_none() {
                        return Err(de::Error::custom(NO_KIND));
                    }
                }
                "params" => msg.params = Some(map.next_value::<Params>()?),
                "requestState" => return Err(de::Error::custom(MISPLACED_STATE)),
                "result" | "error" => {
                    map.next_value::<Checked>()?;
                    msg.has_result_or_error = true;
                }
                _ => {
                    if key_spelling_of(&key, &MESSAGE_KEYS).is_some() {
                        return Err(de::Error::custom(KEY_SPELLING));
                    }
                    map.next_value::<Checked>()?;
                }
            }
            keys.insert(key)?;
        }
        Ok(msg)
    }
}

/// The top level: one message or a batch.
struct Top;

enum Top2 {
    Single(RawMessage),
    Batch(Vec<RawMessage>),
}

impl<'de> DeserializeSeed<'de> for Top {
    type Value = Top2;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Top2, D::Error> {
        d.deserialize_any(TopVisitor)
    }
}

struct TopVisitor;

impl<'de> Visitor<'de> for TopVisitor {
    type Value = Top2;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(NOT_OBJECT)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Top2, A::Error> {
        MessageVisitor.visit_map(map).map(Top2::Single)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Top2, A::Error> {
        let mut out = Vec::new();
        while let Some(m) = seq.next_element_seed(MessageSeed)? {
            out.push(m);
        }
        if out.is_empty() {
            return Err(de::Error::custom(EMPTY_BATCH));
        }
        Ok(Top2::Batch(out))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Top2, E> {
        Err(E::custom(NOT_OBJECT))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Top2, E> {
        Err(E::custom(NOT_OBJECT))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Top2, E> {
        Err(E::custom(NOT_OBJECT))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Top2, E> {
        Err(E::custom(NOT_OBJECT))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Top2, E> {
        Err(E::custom(NOT_OBJECT))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Top2, E> {
        Err(E::custom(NOT_OBJECT))
    }
}

struct MessageSeed;

impl<'de> DeserializeSeed<'de> for MessageSeed {
    type Value = RawMessage;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RawMessage, D::Error> {
        d.deserialize_any(ElementVisitor)
    }
}

/// A batch element: must be an object; anything else is skipped-then-refused so that the
/// error is "invalid request", not a parse error.
struct ElementVisitor;

impl<'de> Visitor<'de> for ElementVisitor {
    type Value = RawMessage;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(NOT_OBJECT)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawMessage, A::Error> {
        MessageVisitor.visit_map(map)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawMessage, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Err(de::Error::custom(NOT_OBJECT))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<RawMessage, E> {
        Err(E::custom(NOT_OBJECT))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<RawMessage, E> {
        Err(E::custom(NOT_OBJECT))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<RawMessage, E> {
        Err(E::custom(NOT_OBJECT))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<RawMessage, E> {
        Err(E::custom(NOT_OBJECT))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<RawMessage, E> {
        Err(E::custom(NOT_OBJECT))
    }
    fn visit_unit<E: de::Error>(self) -> Result<RawMessage, E> {
        Err(E::custom(NOT_OBJECT))
    }
}

/// A JSON-RPC error object answering `id` (`null` when unknown).
pub fn error_object(id: Option<&str>, code: i64, message: &str) -> String {
    error_object_for(id, code, message, None)
}

/// [`error_object`], naming the request it refuses in `error.data.requestId` (the
/// `X-Request-Id` that the access line and the audit events carry too).
pub fn error_object_for(
    id: Option<&str>,
    code: i64,
    message: &str,
    request_id: Option<&str>,
) -> String {
    let message = serde_json::to_string(message).unwrap_or_else(|_| "\"error\"".into());
    let data = match request_id.map(serde_json::to_string) {
        Some(Ok(request_id)) => format!(r#","data":{{"requestId":{request_id}}}"#),
        _ => String::new(),
    };
    format!(
        r#"{{"jsonrpc":"2.0","id":{},"error":{{"code":{code},"message":{message}{data}}}}}"#,
        id.unwrap_or("null")
    )
}

/// The error body for a refused request: one object, or a batch with one per request.
pub fn error_body(inspected: Option<&Inspected>, code: i64, message: &str) -> String {
    error_body_for(inspected, code, message, None)
}

/// [`error_body`] naming the refused request (see [`error_object_for`]).
pub fn error_body_for(
    inspected: Option<&Inspected>,
    code: i64,
    message: &str,
    request_id: Option<&str>,
) -> String {
    let object = |id| error_object_for(id, code, message, request_id);
    match inspected {
        Some(i) if i.batch => {
            let mut ids = i.request_ids().peekable();
            if ids.peek().is_none() {
                return object(None);
            }
            let items: Vec<String> = ids.map(|id| object(Some(id))).collect();
            format!("[{}]", items.join(","))
        }
        Some(i) => object(i.request_ids().next()),
        None => object(None),
    }
}

#[cfg(test)]
mod differential_tests;
/// The two readings of [`inspect`] apart, for the differential fuzz target
/// (`fuzz/fuzz_targets/inspect.rs`): only with the `fuzzing` feature, never in the
/// default build.
#[cfg(feature = "fuzzing")]
pub mod differential {
    use super::{fast, finish, foreign_encoding, inspect_with_serde, Inspected, Malformed};

    /// The fast path's decision, or `None` where it leaves the body to the serde reading.
    pub fn fast_path(body: &[u8]) -> Option<Result<Inspected, Malformed>> {
        fast::single_message(body).map(|message| finish(vec![message], false))
    }

    /// The reference: [`inspect`](super::inspect) with the serde reading alone.
    pub fn reference(body: &[u8]) -> Result<Inspected, Malformed> {
        if let Some(why) = foreign_encoding(body) {
            return Err(Malformed::Encoding(why));
        }
        inspect_with_serde(body)
    }
}

mod fast;
#[cfg(test)]
mod tests;

//! List filtering (DESIGN step 8): the answers to `tools/list`, `prompts/list`,
//! `resources/list` and `resources/templates/list` are rewritten so that the caller sees
//! only what the policy lets them use. Items are removed; every other member
//! (`nextCursor`, `_meta`, …) and every surviving item is kept byte for byte.
//!
//! Works on one JSON-RPC message or batch at a time (a whole JSON body, or one SSE
//! event's data). Nothing is parsed into values: one pass of the [`Scanner`] checks the
//! text and finds the items and their names; the output is the input with the removed
//! items cut out. Anything that cannot be read is an error — the caller fails closed,
//! never passes the list on unfiltered.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::ops::Range;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::scan::{NotJson, Scanner};

/// The list methods and where their items are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    Tools,
    Prompts,
    Resources,
    ResourceTemplates,
}

impl ListKind {
    pub fn of(method: &str) -> Option<ListKind> {
        match method {
            "tools/list" => Some(ListKind::Tools),
            "prompts/list" => Some(ListKind::Prompts),
            "resources/list" => Some(ListKind::Resources),
            "resources/templates/list" => Some(ListKind::ResourceTemplates),
            _ => None,
        }
    }

    pub fn method(self) -> &'static str {
        match self {
            ListKind::Tools => "tools/list",
            ListKind::Prompts => "prompts/list",
            ListKind::Resources => "resources/list",
            ListKind::ResourceTemplates => "resources/templates/list",
        }
    }

    /// The member of `result` holding the items.
    fn field(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Prompts => "prompts",
            ListKind::Resources => "resources",
            ListKind::ResourceTemplates => "resourceTemplates",
        }
    }

    /// The member of an item that the policy judges.
    fn key(self) -> &'static str {
        match self {
            ListKind::Tools | ListKind::Prompts => "name",
            ListKind::Resources => "uri",
            ListKind::ResourceTemplates => "uriTemplate",
        }
    }
}

/// One list request: (order added, raw id as the client wrote it, kind).
type PendingList = (usize, Box<str>, ListKind);

/// List requests sent upstream and not yet answered, looked up by the id's JSON value
/// (one hash lookup per answer: a batch of n answers costs n lookups, not n²).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PendingLists {
    /// Canonical id → the requests with that id, oldest first.
    pending: HashMap<Box<str>, Vec<PendingList>>,
    added: usize,
}

impl PendingLists {
    pub fn add(&mut self, id: &str, kind: ListKind) {
        self.added += 1;
        self.pending
            .entry(canonical_id(id))
            .or_default()
            .push((self.added, Box::from(id), kind));
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    fn kind_of(&self, id: &str) -> Option<ListKind> {
        self.pending
            .get(&canonical_id(id))
            .and_then(|same| same.first())
            .map(|(_, _, kind)| *kind)
    }

    fn remove(&mut self, id: &str) {
        let key = canonical_id(id);
        if let Some(same) = self.pending.get_mut(&key) {
            if !same.is_empty() {
                same.remove(0);
            }
            if same.is_empty() {
                self.pending.remove(&key);
            }
        }
    }

    fn contains(&self, id: &str) -> bool {
        self.pending.contains_key(&canonical_id(id))
    }

    /// Every pending (raw id, kind), in the order added; none is pending afterwards.
    fn drain(&mut self) -> Vec<(Box<str>, ListKind)> {
        let mut all: Vec<_> = self.pending.drain().flat_map(|(_, same)| same).collect();
        all.sort_unstable_by_key(|(order, _, _)| *order);
        all.into_iter().map(|(_, raw, kind)| (raw, kind)).collect()
    }
}

/// One spelling per JSON value, so that ids compare as JSON values: `1` and `1.0` differ
/// as text and as values, but `"a"` and `"\u0061"` are the same string. Plain integers
/// and strings without escapes are their own canonical form; the rest is re-serialised.
fn canonical_id(raw: &str) -> Box<str> {
    let plain_integer = !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit());
    let plain_string =
        raw.len() >= 2 && raw.starts_with('"') && raw.ends_with('"') && !raw.contains('\\');
    if plain_integer || plain_string {
        return Box::from(raw);
    }
    match serde_json::from_str::<serde_json::Value>(raw) {
        Ok(value) => {
            let text = value.to_string();
            // `-0.0 == 0.0` as values.
            if text == "-0.0" {
                Box::from("0.0")
            } else {
                text.into_boxed_str()
            }
        }
        Err(_) => Box::from(raw),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError(pub &'static str);

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// What filtering did to one message.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Filtered {
    /// The new text, when anything was removed.
    pub rewritten: Option<String>,
    /// (method, items removed) per list answer found.
    pub removed: Vec<(ListKind, usize)>,
}

/// Why a message could not be filtered: not JSON at all, or JSON of the wrong shape.
enum Fail {
    NotJson,
    Shape(FilterError),
}

impl From<NotJson> for Fail {
    fn from(_: NotJson) -> Fail {
        Fail::NotJson
    }
}

impl From<FilterError> for Fail {
    fn from(e: FilterError) -> Fail {
        Fail::Shape(e)
    }
}

const DUPLICATE: FilterError = FilterError("a list answer with a duplicate member");

/// One filtered item array: the text between its brackets is replaced by the kept items.
struct Edit {
    inner: Range<usize>,
    kept: Vec<Range<usize>>,
}

/// What filtering one message found, applied only once all of it has been read.
#[derive(Default)]
struct Found {
    edits: Vec<Edit>,
    removed: Vec<(ListKind, usize)>,
    /// Raw ids of the pending lists answered.
    answered: Vec<Range<usize>>,
}

/// An item of a list and its judged member (`name`, `uri`, …) when that is a string
/// found exactly once.
fn item<'a>(s: &mut Scanner<'a>, key: &str) -> Result<(Range<usize>, Option<Cow<'a, str>>), Fail> {
    if s.peek() != Some(b'{') {
        return Ok((s.value()?, None));
    }
    let mut name = None;
    let mut seen = 0;
    let span = s.object(|s, k| {
        if k.is(key) {
            seen += 1;
            if s.peek() == Some(b'"') {
                name = s.string()?.decode();
                return Ok::<_, Fail>(());
            }
        }
        s.value()?;
        Ok(())
    })?;
    // A duplicate member: the client might read the other one. Not shown (fail closed).
    Ok((span, name.filter(|_| seen == 1)))
}

/// Filters a list `result` object, the scanner placed before it.
fn filter_result(
    s: &mut Scanner<'_>,
    kind: ListKind,
    keep: &dyn Fn(ListKind, &str) -> bool,
    found: &mut Found,
) -> Result<(), Fail> {
    if s.peek() != Some(b'{') {
        s.value()?;
        return Err(FilterError("the list result is not a JSON object").into());
    }
    let mut items_seen = false;
    s.object(|s, key| {
        if !key.is(kind.field()) {
            s.value()?;
            return Ok(());
        }
        if items_seen {
            return Err(Fail::Shape(DUPLICATE));
        }
        items_seen = true;
        if s.peek() != Some(b'[') {
            s.value()?;
            return Err(FilterError("the list items are not an array").into());
        }
        let mut kept = Vec::new();
        let mut total = 0;
        let list = s.array(|s| {
            total += 1;
            let (span, name) = item(s, kind.key())?;
            if name.is_some_and(|n| keep(kind, &n)) {
                kept.push(span);
            }
            Ok::<_, Fail>(())
        })?;
        found.removed.push((kind, total - kept.len()));
        if kept.len() < total {
            found.edits.push(Edit {
                inner: list.start + 1..list.end - 1,
                kept,
            });
        }
        Ok(())
    })?;
    if !items_seen {
        return Err(FilterError("the list result has no items member").into());
    }
    Ok(())
}

/// Reads one response object, the scanner placed before it, and filters it if it answers
/// a pending list request.
fn filter_response(
    s: &mut Scanner<'_>,
    pending: &PendingLists,
    keep: &dyn Fn(ListKind, &str) -> bool,
    found: &mut Found,
) -> Result<(), Fail> {
    let text = s.text();
    let mut id: Option<Range<usize>> = None;
    let mut result: Option<Range<usize>> = None;
    let mut filtered = false;
    s.object(|s, key| {
        if key.is("id") {
            if id.is_some() {
                return Err(Fail::Shape(DUPLICATE));
            }
            id = Some(s.value()?);
        } else if key.is("result") {
            if result.is_some() {
                return Err(Fail::Shape(DUPLICATE));
            }
            s.peek();
            let start = s.pos();
            // Usually the id comes first: filter in the same pass.
            match id.as_ref().and_then(|i| pending.kind_of(&text[i.clone()])) {
                Some(kind) => {
                    filter_result(s, kind, keep, found)?;
                    filtered = true;
                }
                None => {
                    s.value()?;
                }
            }
            result = Some(start..s.pos());
        } else {
            s.value()?;
        }
        Ok(())
    })?;
    let Some(id) = id else { return Ok(()) };
    let Some(kind) = pending.kind_of(&text[id.clone()]) else {
        return Ok(());
    };
    if let (Some(result), false) = (result, filtered) {
        // The id came after the result: read the result again.
        filter_result(&mut Scanner::at(text, result.start), kind, keep, found)?;
    }
    // With or without a result (an error answers it too), the request is answered.
    found.answered.push(id);
    Ok(())
}

/// Filters a JSON-RPC message or batch (a whole JSON body, or an SSE event's data).
/// Messages that answer no pending list request pass untouched. An answer to a pending
/// list request that cannot be read is an error (and leaves the request pending).
pub fn filter_message(
    text: &str,
    pending: &mut PendingLists,
    keep: &dyn Fn(ListKind, &str) -> bool,
) -> Result<Filtered, FilterError> {
    let trimmed = text.trim_start();
    let batch = trimmed.starts_with('[');
    if !batch && !trimmed.starts_with('{') {
        // Not a JSON-RPC message (e.g. an empty SSE keep-alive): nothing to filter.
        return Ok(Filtered::default());
    }
    let mut found = Found::default();
    let mut s = Scanner::new(text);
    let read = if batch {
        s.array(|s| match s.peek() {
            Some(b'{') => filter_response(s, pending, keep, &mut found),
            _ => s.value().map(drop).map_err(Fail::from),
        })
        .map(drop)
    } else {
        filter_response(&mut s, pending, keep, &mut found)
    };
    let read = read.and_then(|()| {
        if s.at_end() {
            Ok(())
        } else {
            Err(Fail::NotJson)
        }
    });
    match read {
        Ok(()) => {}
        Err(Fail::Shape(e)) => return Err(e),
        Err(Fail::NotJson) if batch => return Err(FilterError("the response is not JSON")),
        Err(Fail::NotJson) if pending.is_empty() => return Ok(Filtered::default()),
        Err(Fail::NotJson) => return Err(FilterError("the response is not a JSON object")),
    }
    for id in &found.answered {
        pending.remove(&text[id.clone()]);
    }
    let rewritten = (!found.edits.is_empty()).then(|| {
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for edit in &found.edits {
            out.push_str(&text[at..edit.inner.start]);
            for (i, item) in edit.kept.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&text[item.clone()]);
            }
            at = edit.inner.end;
        }
        out.push_str(&text[at..]);
        out
    });
    Ok(Filtered {
        rewritten,
        removed: found.removed,
    })
}

/// Does a JSON-RPC message text answer one of the pending ids? Used to decide whether an
/// unreadable message must be treated as a failure.
pub fn answers_pending(text: &str, pending: &PendingLists) -> bool {
    #[derive(Deserialize)]
    struct IdOnly<'a> {
        #[serde(borrow)]
        id: Option<&'a RawValue>,
    }
    serde_json::from_str::<IdOnly>(text)
        .ok()
        .and_then(|m| m.id)
        .is_some_and(|id| pending.contains(id.get()))
}

/// Largest JSON list answer the gateway buffers to filter; a larger one fails closed.
pub const MAX_JSON_BODY: usize = 16 << 20;

/// The answer the client gets in place of a list that could not be filtered: a JSON-RPC
/// error for every pending list id (which are then no longer pending).
pub fn failure_answers(pending: &mut PendingLists) -> Vec<String> {
    pending
        .drain()
        .into_iter()
        .map(|(id, _)| {
            super::jsonrpc::error_object(
                Some(&id),
                -32002,
                "the upstream's list answer could not be filtered by the gateway",
            )
        })
        .collect()
}

/// A filtered body and what was removed from it.
pub type FilteredBody = (Vec<u8>, Vec<(ListKind, usize)>);

/// Buffers a JSON response body and filters it whole at the end.
#[derive(Debug, Default)]
pub struct JsonListRewriter {
    buf: Vec<u8>,
}

impl JsonListRewriter {
    /// Takes one chunk; returns the body to send once `end` is reached (nothing before).
    pub fn push(
        &mut self,
        chunk: &[u8],
        end: bool,
        pending: &mut PendingLists,
        keep: &dyn Fn(ListKind, &str) -> bool,
    ) -> Result<Option<FilteredBody>, FilterError> {
        if self.buf.len() + chunk.len() > MAX_JSON_BODY {
            return Err(FilterError("the list answer is too large to filter"));
        }
        self.buf.extend_from_slice(chunk);
        if !end {
            return Ok(None);
        }
        let body = std::mem::take(&mut self.buf);
        let text =
            std::str::from_utf8(&body).map_err(|_| FilterError("the response is not UTF-8"))?;
        let filtered = filter_message(text, pending, keep)?;
        if !pending.is_empty() {
            return Err(FilterError(
                "the response does not answer every list request",
            ));
        }
        let out = match filtered.rewritten {
            Some(text) => text.into_bytes(),
            None => body,
        };
        Ok(Some((out, filtered.removed)))
    }
}

/// Filters list answers inside an event stream, event by event. Events that answer no
/// pending list pass at once and unchanged (only an incomplete event is held back,
/// which a client could not dispatch yet anyway).
#[derive(Debug, Default)]
pub struct SseListRewriter {
    splitter: super::sse::EventSplitter,
}

/// The output of one chunk.
#[derive(Debug, Default)]
pub struct SseOutput {
    pub bytes: Vec<u8>,
    pub removed: Vec<(ListKind, usize)>,
    pub failures: usize,
}

impl SseListRewriter {
    pub fn push(
        &mut self,
        chunk: &[u8],
        end: bool,
        pending: &mut PendingLists,
        keep: &dyn Fn(ListKind, &str) -> bool,
    ) -> SseOutput {
        let mut out = SseOutput::default();
        for event in self.splitter.push(chunk) {
            if pending.is_empty() {
                out.bytes.extend_from_slice(&event);
                continue;
            }
            let (_, data) = super::sse::event_type_and_data(&event);
            match filter_message(&data, pending, keep) {
                Ok(filtered) => {
                    out.removed.extend(filtered.removed);
                    match filtered.rewritten {
                        Some(text) => out.bytes.extend(super::sse::with_data(&event, &text)),
                        None => out.bytes.extend_from_slice(&event),
                    }
                }
                Err(_) => {
                    out.failures += 1;
                    for answer in failure_answers(pending) {
                        out.bytes
                            .extend(format!("event: message\ndata: {answer}\n\n").into_bytes());
                    }
                }
            }
        }
        if end {
            out.bytes.extend(self.splitter.take_rest());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(ids: &[(&str, ListKind)]) -> PendingLists {
        let mut p = PendingLists::default();
        for (id, k) in ids {
            p.add(id, *k);
        }
        p
    }

    fn only_echo(kind: ListKind, name: &str) -> bool {
        kind == ListKind::Tools && name == "echo"
    }

    #[test]
    fn removes_items_and_keeps_everything_else() {
        let body = r#"{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"echo","description":"x","inputSchema":{"type":"object"}},{"name":"get-env"},{"description":"nameless"}],"nextCursor":"c2","_meta":{"a":1}}}"#;
        let mut p = pending(&[("3", ListKind::Tools)]);
        let out = filter_message(body, &mut p, &only_echo).unwrap();
        assert_eq!(
            out.rewritten.as_deref(),
            Some(
                r#"{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"echo","description":"x","inputSchema":{"type":"object"}}],"nextCursor":"c2","_meta":{"a":1}}}"#
            )
        );
        assert_eq!(out.removed, vec![(ListKind::Tools, 2)]);
        assert!(p.is_empty(), "the answered id is no longer pending");
    }

    #[test]
    fn unrelated_messages_and_other_ids_pass_untouched() {
        let mut p = pending(&[("3", ListKind::Tools)]);
        for text in [
            r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{}}"#,
            r#"{"jsonrpc":"2.0","id":4,"result":{"tools":[{"name":"x"}]}}"#,
            r#"{"jsonrpc":"2.0","id":3,"error":{"code":-1,"message":"no"}}"#,
            "",
        ] {
            assert_eq!(
                filter_message(text, &mut p, &only_echo).unwrap().rewritten,
                None,
                "{text}"
            );
        }
    }

    #[test]
    fn batches_filter_each_matching_answer() {
        let body = r#"[{"jsonrpc":"2.0","id":"a","result":{"tools":[{"name":"echo"},{"name":"x"}]}},{"jsonrpc":"2.0","id":"b","result":{}},{"jsonrpc":"2.0","id":"c","result":{"prompts":[{"name":"p"}]}}]"#;
        let mut p = pending(&[("\"a\"", ListKind::Tools), ("\"c\"", ListKind::Prompts)]);
        let out = filter_message(body, &mut p, &only_echo).unwrap();
        assert_eq!(
            out.rewritten.as_deref(),
            Some(
                r#"[{"jsonrpc":"2.0","id":"a","result":{"tools":[{"name":"echo"}]}},{"jsonrpc":"2.0","id":"b","result":{}},{"jsonrpc":"2.0","id":"c","result":{"prompts":[]}}]"#
            )
        );
    }

    #[test]
    fn unreadable_answers_to_pending_lists_are_errors() {
        for body in [
            r#"{"jsonrpc":"2.0","id":3,"result":{"tools":"nope"}}"#,
            r#"{"jsonrpc":"2.0","id":3,"result":{}}"#,
            r#"{"jsonrpc":"2.0","id":3,"result":[]}"#,
            r#"{"jsonrpc":"2.0","id":3,"id":3,"result":{"tools":[]}}"#,
            r#"{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"echo"}]"#,
        ] {
            let mut p = pending(&[("3", ListKind::Tools)]);
            assert!(filter_message(body, &mut p, &only_echo).is_err(), "{body}");
        }
    }

    #[test]
    fn duplicate_name_members_hide_the_item() {
        let body =
            r#"{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"echo","name":"delete"}]}}"#;
        let mut p = pending(&[("3", ListKind::Tools)]);
        let out = filter_message(body, &mut p, &only_echo).unwrap();
        assert_eq!(out.removed, vec![(ListKind::Tools, 1)]);
    }

    /// The filter against a reference built on `serde_json::Value`, over generated
    /// answers: names with escapes, white space, members in any order, ids after results,
    /// nested values, items that are not objects or have no name.
    #[test]
    fn agrees_with_a_value_based_reference() {
        use rand::{rngs::StdRng, Rng, SeedableRng};
        use serde_json::{json, Value};
        let mut rng = StdRng::seed_from_u64(7);
        let names = [
            "echo",
            "e\\u0063ho",
            "x",
            "get-env",
            "\\u00e9",
            "echo\\n",
            "ech",
        ];
        let keep = |_: ListKind, name: &str| name == "echo" || name == "é";
        for round in 0..500 {
            let ws = |rng: &mut StdRng| [" ", "", "\n", "\t "][rng.gen_range(0..4)];
            let mut items = Vec::new();
            for _ in 0..rng.gen_range(0..8) {
                let item = match rng.gen_range(0..10) {
                    0 => "42".to_string(),
                    1 => format!(
                        r#"{{"description":"no name",{}"x":[1,{{"name":"echo"}}]}}"#,
                        ws(&mut rng)
                    ),
                    2 => r#"{"name":7}"#.to_string(),
                    _ => {
                        let name = names[rng.gen_range(0..names.len())];
                        let schema = r#"{"type":"object","properties":{"name":{"type":"string"}}}"#;
                        if rng.gen_bool(0.5) {
                            format!(
                                r#"{{"name"{w}:{w}"{name}","inputSchema":{schema}}}"#,
                                w = ws(&mut rng)
                            )
                        } else {
                            format!(
                                r#"{{"inputSchema":{schema},{w}"na\u006de":"{name}"}}"#,
                                w = ws(&mut rng)
                            )
                        }
                    }
                };
                items.push(item);
            }
            let list = format!(
                "[{}{}]",
                ws(&mut rng),
                items.join(&format!(",{}", ws(&mut rng)))
            );
            let result = format!(
                r#"{{"nextCursor":"c{round}","tools":{list},"_meta":{{"k":[null,true]}}}}"#
            );
            let body = if rng.gen_bool(0.3) {
                format!(r#"{{"result":{result},"jsonrpc":"2.0","id":{round}}}"#)
            } else {
                format!(
                    r#"{{"jsonrpc":"2.0",{}"id":{round},"result":{result}}}"#,
                    ws(&mut rng)
                )
            };
            let mut expected: Value = serde_json::from_str(&body).unwrap();
            let tools = expected["result"]["tools"].as_array().unwrap().clone();
            let kept: Vec<Value> = tools
                .into_iter()
                .filter(|t| {
                    t.get("name")
                        .and_then(Value::as_str)
                        .is_some_and(|n| keep(ListKind::Tools, n))
                })
                .collect();
            let removed = expected["result"]["tools"].as_array().unwrap().len() - kept.len();
            expected["result"]["tools"] = json!(kept);

            let mut p = pending(&[(&round.to_string(), ListKind::Tools)]);
            let out = filter_message(&body, &mut p, &keep).unwrap();
            let got: Value =
                serde_json::from_str(out.rewritten.as_deref().unwrap_or(&body)).unwrap();
            assert_eq!(got, expected, "{body}");
            assert_eq!(out.removed, vec![(ListKind::Tools, removed)], "{body}");
            assert_eq!(out.rewritten.is_none(), removed == 0, "{body}");
            assert!(p.is_empty());
        }
    }

    #[test]
    fn broken_json_after_a_good_list_leaves_the_request_pending() {
        let body = r#"{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"echo"},{"name":"x"}]}} trailing"#;
        let mut p = pending(&[("3", ListKind::Tools)]);
        assert!(filter_message(body, &mut p, &only_echo).is_err());
        assert!(!p.is_empty(), "still pending, so the error answers it");
        let body = r#"{"jsonrpc":"2.0","id":3,"result":{"tools":[],"tools":[{"name":"x"}]}}"#;
        let mut p = pending(&[("3", ListKind::Tools)]);
        assert!(
            filter_message(body, &mut p, &only_echo).is_err(),
            "duplicate items member"
        );
        let body =
            r#"{"jsonrpc":"2.0","id":3,"result":{"tools":[]},"result":{"tools":[{"name":"x"}]}}"#;
        let mut p = pending(&[("3", ListKind::Tools)]);
        assert!(
            filter_message(body, &mut p, &only_echo).is_err(),
            "duplicate result"
        );
    }

    #[test]
    fn ids_compare_as_json_values() {
        let mut p = pending(&[("\"a\"", ListKind::Tools)]);
        assert!(answers_pending(r#"{"id":"\u0061","result":{}}"#, &p));
        let body = r#"{"jsonrpc":"2.0","id":"\u0061","result":{"tools":[{"name":"x"}]}}"#;
        assert!(filter_message(body, &mut p, &only_echo)
            .unwrap()
            .rewritten
            .is_some());
    }
}

#[cfg(test)]
mod stream_tests {
    use super::*;

    fn only_echo(kind: ListKind, name: &str) -> bool {
        kind == ListKind::Tools && name == "echo"
    }

    #[test]
    fn sse_list_split_across_chunks_with_notifications_passing_first() {
        let mut p = PendingLists::default();
        p.add("7", ListKind::Tools);
        let mut r = SseListRewriter::default();
        let stream = "id: 1\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\nid: 2\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"tools\":[{\"name\":\"echo\"},{\"name\":\"secret\"}]}}\n\n";
        let cut = stream.find("secret").unwrap();
        let first = r.push(&stream.as_bytes()[..cut], false, &mut p, &only_echo);
        // The notification is out before the list answer is complete.
        assert!(String::from_utf8_lossy(&first.bytes).contains("notifications/progress"));
        assert!(!String::from_utf8_lossy(&first.bytes).contains("tools"));
        let rest = r.push(&stream.as_bytes()[cut..], true, &mut p, &only_echo);
        let text = String::from_utf8(rest.bytes).unwrap();
        assert_eq!(text, "id: 2\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"tools\":[{\"name\":\"echo\"}]}}\n\n");
        assert_eq!(rest.removed, vec![(ListKind::Tools, 1)]);
    }

    #[test]
    fn unreadable_sse_answer_becomes_an_error_event() {
        let mut p = PendingLists::default();
        p.add("7", ListKind::Tools);
        let mut r = SseListRewriter::default();
        let out = r.push(
            b"data: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"tools\":1}}\n\n",
            true,
            &mut p,
            &only_echo,
        );
        let text = String::from_utf8(out.bytes).unwrap();
        assert_eq!(out.failures, 1);
        assert!(
            text.contains("\"id\":7") && text.contains("-32002") && !text.contains("tools"),
            "{text}"
        );
    }

    #[test]
    fn json_body_is_filtered_whole_or_refused() {
        let mut p = PendingLists::default();
        p.add("1", ListKind::Tools);
        let mut r = JsonListRewriter::default();
        let body = br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"echo"},{"name":"x"}]}}"#;
        assert_eq!(r.push(&body[..10], false, &mut p, &only_echo), Ok(None));
        let (out, removed) = r
            .push(&body[10..], true, &mut p, &only_echo)
            .unwrap()
            .unwrap();
        assert_eq!(
            out,
            br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"echo"}]}}"#.to_vec()
        );
        assert_eq!(removed, vec![(ListKind::Tools, 1)]);

        let mut p = PendingLists::default();
        p.add("1", ListKind::Tools);
        let mut r = JsonListRewriter::default();
        assert!(r.push(b"not json", true, &mut p, &only_echo).is_err());
        assert_eq!(failure_answers(&mut p).len(), 1);
    }
}

#[cfg(test)]
mod scale {
    use super::*;

    /// A batch answer to `n` `tools/list` requests with ids `1..=n` (and the pending set).
    fn batch_answer(n: usize) -> (String, PendingLists) {
        let mut pending = PendingLists::default();
        let mut text = String::from("[");
        for i in 1..=n {
            pending.add(&i.to_string(), ListKind::Tools);
            if i > 1 {
                text.push(',');
            }
            text.push_str(&format!(
                r#"{{"jsonrpc":"2.0","id":{i},"result":{{"tools":[{{"name":"echo"}},{{"name":"admin-delete"}}]}}}}"#
            ));
        }
        text.push(']');
        (text, pending)
    }

    #[test]
    fn pending_ids_match_by_json_value() {
        let mut p = PendingLists::default();
        for id in ["1", "\"a\"", "-0.0", "1e2", "\"\\u00e9\""] {
            p.add(id, ListKind::Tools);
        }
        for (answer, pending) in [
            ("1", true),
            ("1.0", false),
            ("\"1\"", false),
            ("\"\\u0061\"", true),
            ("\"a\"", true),
            ("0.0", true),
            ("100.0", true),
            ("100", false),
            ("\"é\"", true),
            ("2", false),
        ] {
            assert_eq!(p.kind_of(answer).is_some(), pending, "{answer}");
        }
        // The same id twice: each answer settles one, oldest first.
        let mut twice = PendingLists::default();
        twice.add("7", ListKind::Tools);
        twice.add("7", ListKind::Prompts);
        twice.remove("7");
        assert_eq!(twice.kind_of("7"), Some(ListKind::Prompts));
        twice.remove("7");
        assert!(twice.is_empty());
        // Failure answers come in the order the requests were made.
        let mut many = PendingLists::default();
        for id in ["3", "1", "2"] {
            many.add(id, ListKind::Tools);
        }
        let ids: Vec<serde_json::Value> = failure_answers(&mut many)
            .iter()
            .map(|a| serde_json::from_str::<serde_json::Value>(a).unwrap()["id"].clone())
            .collect();
        assert_eq!(ids, [3, 1, 2]);
        assert!(many.is_empty());
    }

    /// Figures for the brief (run with `--ignored --nocapture`): the time to filter a
    /// batch answer grows with its length, linearly once ids are looked up by value.
    #[test]
    #[ignore]
    fn batch_answer_filtering_time_by_length() {
        for n in [1_000, 5_000, 15_000] {
            let (text, mut pending) = batch_answer(n);
            let started = std::time::Instant::now();
            let filtered = filter_message(&text, &mut pending, &|_, name| name == "echo");
            let elapsed = started.elapsed();
            assert!(filtered.is_ok() && pending.is_empty());
            println!("{n} answers: {elapsed:?}");
        }
    }
}

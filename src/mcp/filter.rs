//! List filtering (DESIGN step 8): the answers to `tools/list`, `prompts/list`,
//! `resources/list` and `resources/templates/list` are rewritten so that the caller sees
//! only what the policy lets them use. Items are removed; every other member
//! (`nextCursor`, `_meta`, …) and every surviving item is kept byte for byte.
//!
//! Works on one JSON-RPC message or batch at a time (a whole JSON body, or one SSE
//! event's data). Items are not parsed into values: each is kept as raw JSON and only its
//! name (or URI) is read, so filtering a list costs one scan of it. Anything that cannot
//! be read is an error — the caller fails closed, never passes the list on unfiltered.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

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

/// List requests sent upstream and not yet answered: (raw id, kind).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PendingLists {
    pending: Vec<(Box<str>, ListKind)>,
}

impl PendingLists {
    pub fn add(&mut self, id: &str, kind: ListKind) {
        self.pending.push((Box::from(id), kind));
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    fn kind_of(&self, id: &str) -> Option<ListKind> {
        self.pending
            .iter()
            .find(|(p, _)| same_id(p, id))
            .map(|(_, k)| *k)
    }

    fn remove(&mut self, id: &str) {
        if let Some(at) = self.pending.iter().position(|(p, _)| same_id(p, id)) {
            self.pending.swap_remove(at);
        }
    }
}

/// Ids are compared as JSON values: `1` and `1.0` differ as text but `"a"` and `"\u0061"`
/// are the same string.
fn same_id(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (
        serde_json::from_str::<serde_json::Value>(a),
        serde_json::from_str::<serde_json::Value>(b),
    ) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
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

/// Object members in order, values raw.
struct Members<'a>(Vec<(String, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
                let mut out: Vec<(String, &'de RawValue)> = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    if out.iter().any(|(k, _)| *k == key) {
                        return Err(de::Error::custom("duplicate key"));
                    }
                    let value = map.next_value()?;
                    out.push((key, value));
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl<'a> Members<'a> {
    fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    fn render(&self, replace: Option<(&str, &str)>) -> String {
        let mut out = String::from("{");
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&serde_json::to_string(k).unwrap_or_default());
            out.push(':');
            match replace {
                Some((key, text)) if key == k => out.push_str(text),
                _ => out.push_str(v.get()),
            }
        }
        out.push('}');
        out
    }
}

/// An item's judged member, if it is a string.
fn item_key(item: &RawValue, key: &str) -> Option<String> {
    struct KeyOnly<'k> {
        key: &'k str,
    }
    impl<'de> de::DeserializeSeed<'de> for KeyOnly<'_> {
        type Value = Option<String>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<String>, D::Error> {
            d.deserialize_map(self)
        }
    }
    impl<'de> Visitor<'de> for KeyOnly<'_> {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<String>, A::Error> {
            let mut found = None;
            let mut seen_key = false;
            while let Some(k) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                if k == self.key {
                    if seen_key {
                        return Err(de::Error::custom("duplicate key"));
                    }
                    seen_key = true;
                    found = map
                        .next_value::<serde_json::Value>()?
                        .as_str()
                        .map(str::to_string);
                } else {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
            Ok(found)
        }
    }
    let mut de = serde_json::Deserializer::from_str(item.get());
    de::DeserializeSeed::deserialize(KeyOnly { key }, &mut de)
        .ok()
        .flatten()
}

/// Filters one response object if it answers a pending list request.
fn filter_response(
    members: &Members<'_>,
    pending: &mut PendingLists,
    keep: &dyn Fn(ListKind, &str) -> bool,
    removed: &mut Vec<(ListKind, usize)>,
) -> Result<Option<String>, FilterError> {
    let Some(id) = members.get("id") else {
        return Ok(None);
    };
    let Some(kind) = pending.kind_of(id.get()) else {
        return Ok(None);
    };
    let Some(result) = members.get("result") else {
        pending.remove(id.get());
        return Ok(None); // an error answer: nothing to filter
    };
    let result: Members = serde_json::from_str(result.get())
        .map_err(|_| FilterError("the list result is not a JSON object"))?;
    let items_raw = result
        .get(kind.field())
        .ok_or(FilterError("the list result has no items member"))?;
    let items: Vec<&RawValue> = serde_json::from_str(items_raw.get())
        .map_err(|_| FilterError("the list items are not an array"))?;
    let mut kept: Vec<&str> = Vec::with_capacity(items.len());
    for item in &items {
        // An item whose name cannot be read is not shown: fail closed.
        if item_key(item, kind.key()).is_some_and(|name| keep(kind, &name)) {
            kept.push(item.get());
        }
    }
    // Answered: only now is the id no longer pending (a failure above leaves it pending,
    // so the error sent instead answers it).
    pending.remove(id.get());
    removed.push((kind, items.len() - kept.len()));
    if kept.len() == items.len() {
        return Ok(None);
    }
    let list = format!("[{}]", kept.join(","));
    let result = result.render(Some((kind.field(), &list)));
    Ok(Some(members.render(Some(("result", &result)))))
}

/// Filters a JSON-RPC message or batch (a whole JSON body, or an SSE event's data).
/// Messages that answer no pending list request pass untouched. An answer to a pending
/// list request that cannot be read is an error.
pub fn filter_message(
    text: &str,
    pending: &mut PendingLists,
    keep: &dyn Fn(ListKind, &str) -> bool,
) -> Result<Filtered, FilterError> {
    let trimmed = text.trim_start();
    let mut out = Filtered::default();
    if trimmed.starts_with('[') {
        let items: Vec<&RawValue> =
            serde_json::from_str(text).map_err(|_| FilterError("the response is not JSON"))?;
        let mut rendered = Vec::with_capacity(items.len());
        let mut changed = false;
        for item in items {
            let replacement = match serde_json::from_str::<Members>(item.get()) {
                Ok(members) => filter_response(&members, pending, keep, &mut out.removed)?,
                Err(_) => None,
            };
            changed |= replacement.is_some();
            rendered.push(replacement.unwrap_or_else(|| item.get().to_string()));
        }
        if changed {
            out.rewritten = Some(format!("[{}]", rendered.join(",")));
        }
        return Ok(out);
    }
    if !trimmed.starts_with('{') {
        // Not a JSON-RPC message (e.g. an empty SSE keep-alive): nothing to filter.
        return Ok(out);
    }
    match serde_json::from_str::<Members>(text) {
        Ok(members) => {
            out.rewritten = filter_response(&members, pending, keep, &mut out.removed)?;
            Ok(out)
        }
        Err(_) if pending.is_empty() => Ok(out),
        Err(_) => Err(FilterError("the response is not a JSON object")),
    }
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
        .is_some_and(|id| pending.pending.iter().any(|(p, _)| same_id(p, id.get())))
}

/// Largest JSON list answer the gateway buffers to filter; a larger one fails closed.
pub const MAX_JSON_BODY: usize = 16 << 20;

/// The answer the client gets in place of a list that could not be filtered: a JSON-RPC
/// error for every pending list id (which are then no longer pending).
pub fn failure_answers(pending: &mut PendingLists) -> Vec<String> {
    pending
        .pending
        .drain(..)
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

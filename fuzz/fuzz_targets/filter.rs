//! List filtering (`mcp::filter`, `mcp::stream`): JSON answers, and SSE streams cut into
//! arbitrary chunks. On every input:
//! - nothing panics;
//! - no forbidden entry survives, in any reading of the output ([`forbidden_entry`]:
//!   every duplicate member considered), whether the answer came as one JSON body cut
//!   into chunks, as the data of one event, or as a whole event stream read back the way
//!   a client reads it;
//! - on a message without duplicate keys, the filter agrees with a reference built on
//!   `serde_json::Value`: the same items removed, the same messages withheld,
//!   `cacheScope` made private on filtered lists, everything else unchanged.
#![no_main]

use drawbridge::mcp::filter::{filter_message, JsonListRewriter};
use drawbridge::mcp::sse::EventReader;
use drawbridge::mcp::stream::{Hooks, SseFilter};
use drawbridge_fuzz::{forbidden_entry, keep, split_chunks, Doc, LISTS};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// What the reference expects of one message or batch: `None` when the filter must
/// refuse it (a list member that is not an array), `Some(None)` when all of it is
/// withheld, else the filtered value.
fn reference(value: &Value) -> Option<Option<Value>> {
    match value {
        Value::Array(items) => {
            let mut kept = Vec::new();
            let mut changed = false;
            for item in items {
                match reference_message(item)? {
                    Some(filtered) => {
                        changed |= filtered != *item;
                        kept.push(filtered);
                    }
                    None => changed = true,
                }
            }
            if changed && kept.is_empty() {
                return Some(None);
            }
            Some(Some(Value::Array(kept)))
        }
        other => reference_message(other),
    }
}

/// One message: `Some(None)` when withheld.
fn reference_message(message: &Value) -> Option<Option<Value>> {
    let Value::Object(members) = message else {
        return Some(Some(message.clone()));
    };
    let mut out = members.clone();
    if let Some(Value::Object(result)) = members.get("result") {
        // A requestState is sealed on its way to the client: one that is not a string
        // cannot be, and the answer is refused (`mcp::handles`).
        if result.get("requestState").is_some_and(|s| !s.is_string()) {
            return None;
        }
        let mut result = result.clone();
        let mut any_list = false;
        for (field, kind, key) in LISTS {
            let Some(list) = result.get_mut(field) else {
                continue;
            };
            let Value::Array(items) = list else {
                return None;
            };
            any_list = true;
            items.retain(|item| {
                item.get(key)
                    .and_then(Value::as_str)
                    .is_some_and(|name| keep(kind, name))
            });
        }
        if any_list && result.contains_key("cacheScope") {
            result.insert("cacheScope".into(), Value::String("private".into()));
        }
        out.insert("result".into(), Value::Object(result));
    }
    if members.get("method").and_then(Value::as_str) == Some("notifications/resources/updated") {
        let uri = members
            .get("params")
            .and_then(|p| p.get("uri"))
            .and_then(Value::as_str);
        if !uri.is_some_and(|uri| keep(drawbridge::mcp::filter::ListKind::Resources, uri)) {
            return Some(None);
        }
    }
    Some(Some(Value::Object(out)))
}

fn assert_nothing_forbidden(text: &str, what: &str) {
    if let Ok(doc) = serde_json::from_str::<Doc>(text) {
        if let Some(entry) = forbidden_entry(&doc) {
            panic!("{what}: a forbidden entry survived: {entry}\n{text}");
        }
    }
}

/// An event stream back through a client's reader: every event's data.
fn client_reads(stream: &[u8]) -> Vec<String> {
    let mut reader = EventReader::new(usize::MAX);
    match reader.push(stream, true) {
        Ok(events) => events.iter().filter_map(|e| e.data()).collect(),
        Err(e) => panic!("the gateway wrote a stream its own reader refuses: {e:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let chunks = split_chunks(data);
    let whole: Vec<u8> = chunks.concat();

    // One message or batch, as a whole JSON answer cut into chunks.
    let mut rewriter = JsonListRewriter::new(true);
    let mut answer = None;
    for (i, chunk) in chunks.iter().enumerate() {
        let out = rewriter.push(chunk, i + 1 == chunks.len(), &keep);
        match out {
            Ok(Some((body, _))) => answer = Some(body),
            Ok(None) => {}
            Err(_) => break,
        }
    }
    if let Some(body) = &answer {
        assert_nothing_forbidden(&String::from_utf8_lossy(body), "JSON answer");
    }

    // The same text through filter_message, checked against the reference.
    if let Ok(text) = std::str::from_utf8(&whole) {
        let filtered = filter_message(text, &keep);
        if let Ok(filtered) = &filtered {
            if !filtered.dropped {
                let out = filtered.rewritten.as_deref().unwrap_or(text);
                assert_nothing_forbidden(out, "message");
            }
        }
        let doc = serde_json::from_str::<Doc>(text);
        let value = serde_json::from_str::<Value>(text);
        if let (Ok(doc), Ok(value)) = (doc, value) {
            if !doc.has_duplicate_keys() {
                match (reference(&value), &filtered) {
                    (None, Err(_)) => {}
                    (None, Ok(_)) => panic!("a list that is not an array was accepted"),
                    (Some(_), Err(e)) => panic!("a plain message was refused: {e}"),
                    (Some(None), Ok(f)) => {
                        assert!(f.dropped, "a message the caller may not see passed")
                    }
                    (Some(Some(want)), Ok(f)) => {
                        assert!(!f.dropped, "a message the caller may see was withheld");
                        let out = f.rewritten.as_deref().unwrap_or(text);
                        let got: Value = serde_json::from_str(out).expect("filtered JSON");
                        assert_eq!(got, want, "the filter and the reference disagree");
                    }
                }
            }
        }

        // The same text as the data of one event, in a stream cut where the input says.
        let mut stream = String::from("id: 1\n");
        for line in text.split('\n') {
            stream.push_str("data: ");
            stream.push_str(line);
            stream.push('\n');
        }
        stream.push('\n');
        check_stream(
            stream.as_bytes(),
            &chunks.iter().map(|c| c.len()).collect::<Vec<_>>(),
        );
    }

    // The raw input as an event stream.
    check_stream(&whole, &chunks.iter().map(|c| c.len()).collect::<Vec<_>>());
});

/// Filters `stream` in chunks of the given lengths (the last takes the rest) and reads
/// the output back as a client would: no event's data holds a forbidden entry.
fn check_stream(stream: &[u8], lengths: &[usize]) {
    let errors =
        || vec![r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32002,"message":"no"}}"#.to_string()];
    // No endpoint is mappable here: an `endpoint` event's data is a URL to the client,
    // not a message, and the sse target checks the rewriter; here it ends the stream.
    let endpoint = |_: &str| None;
    let hooks = Hooks {
        keep: Some(&keep),
        seal_state: None,
        tasks: None,
        pinned: None,
        endpoint: &endpoint,
        error_messages: &errors,
    };
    let mut filter = SseFilter::new(1 << 20);
    let mut out = Vec::new();
    let mut at = 0;
    for (i, &len) in lengths.iter().enumerate() {
        let last = i + 1 == lengths.len();
        let end = if last {
            stream.len()
        } else {
            (at + len).min(stream.len())
        };
        out.extend(filter.push(&stream[at..end], last, &hooks).bytes);
        at = end;
    }
    for data in client_reads(&out) {
        assert_nothing_forbidden(&data, "event stream");
    }
}

//! JSON-RPC inspection (`mcp::jsonrpc`) as a differential target. On every input:
//! - neither reading panics;
//! - the fast path, where it decides, decides exactly as the serde reading (the
//!   reference), and `inspect` always answers as the reference does;
//! - whenever a body is accepted, a lenient upstream (`serde_json::Value`: any JSON,
//!   last duplicate wins) would call exactly the methods and targets the gateway judged;
//! - and the arguments argument rules judge (`mcp::arguments`, its own strict reader)
//!   are exactly those that upstream reads, or are refused as unreadable only for a
//!   second spelling of `arguments`.
#![no_main]

use drawbridge::mcp::arguments::{CallArguments, Holder, Unreadable};
use drawbridge::mcp::jsonrpc::{differential, inspect, MessageKind};
use drawbridge::mcp::methods;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|body: &[u8]| {
    let reference = differential::reference(body);
    if let Some(fast) = differential::fast_path(body) {
        assert_eq!(
            fast, reference,
            "the fast path disagrees with the serde reading"
        );
    }
    let inspected = inspect(body);
    assert_eq!(
        inspected, reference,
        "inspect disagrees with the serde reading"
    );

    let Ok(inspected) = inspected else { return };
    let value: Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        // A number past f64's range (`"id":1e400`) or a lone surrogate escape in a string
        // id (`"\ud800"`, `"\udbde?"`) is JSON, and the gateway passes ids on as written (every other
        // string it decodes, and refuses one that does not decode); serde_json's `Value`
        // cannot hold either, so that upstream calls nothing.
        Err(e)
            if e.to_string().starts_with("number out of range")
                || e.to_string().contains("surrogate")
                || e.to_string().contains("hex escape") =>
        {
            return
        }
        Err(e) => panic!("an accepted body is not JSON to serde_json: {e}"),
    };
    let (items, batch) = match value {
        Value::Array(items) => (items, true),
        other => (vec![other], false),
    };
    assert_eq!(inspected.batch, batch);
    assert_eq!(inspected.messages.len(), items.len());
    let arguments = CallArguments::new(body);
    for (index, item) in items.iter().enumerate() {
        let upstream = item.get("params").and_then(|p| p.get("arguments"));
        match arguments.of(index, Holder::Arguments) {
            Ok(judged) => assert_eq!(judged, upstream, "the arguments the upstream reads"),
            Err(Unreadable::Spelling) => {}
            Err(Unreadable::Body) => {
                // Only a `params` that is not an object (which names no arguments).
                assert!(
                    item.get("params").is_some_and(|p| !p.is_object()),
                    "accepted, but its arguments are unreadable"
                );
            }
        }
    }
    for (message, item) in inspected.messages.iter().zip(&items) {
        let method = item.get("method").and_then(Value::as_str);
        match &message.kind {
            MessageKind::Call {
                method: judged,
                target,
            } => {
                assert_eq!(
                    Some(judged.as_str()),
                    method,
                    "the method the upstream reads"
                );
                let member = methods::lookup(judged)
                    .and_then(|m| m.target())
                    .map(|t| t.member());
                let upstream_target = member.map(|member| {
                    item.get("params")
                        .and_then(|p| p.get(member))
                        .and_then(Value::as_str)
                });
                assert_eq!(
                    target.as_deref(),
                    upstream_target.flatten(),
                    "the target the upstream reads"
                );
            }
            MessageKind::Response => {
                assert_eq!(method, None, "a response the upstream reads as a call");
            }
        }
        let id = item.get("id").map(Value::to_string);
        match (&message.id, id) {
            (None, None) => {}
            (Some(ours), Some(theirs)) => {
                // The id is kept as written; numbers may be spelled differently.
                let ours: Value = serde_json::from_str(ours).expect("an id is JSON");
                assert_eq!(ours.to_string(), theirs, "the id the upstream reads");
            }
            (ours, theirs) => panic!("id {ours:?} judged, {theirs:?} read upstream"),
        }
    }
});

use super::*;
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::fmt;

fn call(id: Option<&str>, method: &str, target: Option<&str>) -> Message {
    Message {
        id: id.map(Box::from),
        kind: MessageKind::Call {
            method: method.into(),
            target: target.map(str::to_string),
        },
        request_state: None,
        version_claim: VersionClaim::Absent,
        task_id: None,
        related_task: None,
    }
}

#[test]
fn single_request_notification_and_response() {
    let r = inspect(br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"a":{"b":[1,{"c":2}]}}}}"#)
        .unwrap();
    assert_eq!(
        r.messages,
        vec![call(Some("7"), "tools/call", Some("echo"))]
    );
    assert!(!r.batch);
    let n = inspect(br#" {"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
    assert_eq!(
        n.messages,
        vec![call(None, "notifications/initialized", None)]
    );
    let resp = inspect(br#"{"jsonrpc":"2.0","id":"s-1","result":{}}"#).unwrap();
    assert_eq!(resp.messages[0].kind, MessageKind::Response);
    assert_eq!(resp.request_ids().count(), 0);
}

#[test]
fn targets_of_resources_and_prompts() {
    let r = inspect(br#"[{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"test://static/resource/1"}},{"params":{"name":"p"},"method":"prompts/get","jsonrpc":"2.0","id":2}]"#).unwrap();
    assert_eq!(
        r.messages,
        vec![
            call(
                Some("1"),
                "resources/read",
                Some("test://static/resource/1")
            ),
            call(Some("2"), "prompts/get", Some("p"))
        ]
    );
}

#[test]
fn escaped_names_are_decoded() {
    let r = inspect(br#"{"jsonrpc":"2.0","id":1,"method":"tools\u002fcall","params":{"n\u0061me":"del\u0065te_repo"}}"#).unwrap();
    assert_eq!(
        r.messages,
        vec![call(Some("1"), "tools/call", Some("delete_repo"))]
    );
}

/// The protocol version a single-message body names in `params._meta`.
fn claim_of(body: &str) -> Result<VersionClaim, Malformed> {
    inspect(body.as_bytes()).map(|i| i.messages[0].version_claim.clone())
}

#[test]
fn the_protocol_version_in_meta_is_kept() {
    let named = |v: &str| Ok(VersionClaim::Named(v.into()));
    assert_eq!(
        claim_of(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#
        ),
        named("2026-07-28")
    );
    assert_eq!(
        claim_of(
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{"io.modelcontextprotocol\/protocolVersion":"2026-\u00307-28"}}}"#
        ),
        named("2026-07-28"),
        "escapes are decoded"
    );
    assert_eq!(
        claim_of(
            r#"{"jsonrpc":"2.0","method":"notifications/x","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#
        ),
        named("2026-07-28"),
        "notifications too"
    );
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":null}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":["2026-07-28"]}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":20260728}}}"#,
    ] {
        assert_eq!(claim_of(body), Ok(VersionClaim::NotAString), "{body}");
    }
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":"2026-07-28"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":null}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"ping","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":[{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}]}"#,
    ] {
        assert_eq!(claim_of(body), Ok(VersionClaim::Absent), "{body}");
    }
    let response = inspect(
        br#"{"jsonrpc":"2.0","id":1,"result":{},"params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
    )
    .unwrap();
    assert_eq!(response.messages[0].version_claim, VersionClaim::Absent);
    let batch = inspect(
        br#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"ping","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}]"#,
    )
    .unwrap();
    assert_eq!(batch.messages[0].version_claim, VersionClaim::Absent);
    assert_eq!(
        batch.messages[1].version_claim,
        VersionClaim::Named("2026-07-28".into())
    );
}

#[test]
fn the_related_task_id_is_read_from_meta_and_must_be_one_string() {
    let related = |body: &str| inspect(body.as_bytes()).map(|i| i.messages[0].related_task.clone());
    let with = |meta: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"x","_meta":{meta}}}}}"#
        )
    };
    assert_eq!(
        related(&with(
            r#"{"io.modelcontextprotocol/related-task":{"taskId":"t-1"}}"#
        )),
        Ok(Some("t-1".into()))
    );
    assert_eq!(
        related(&with(
            r#"{"io.modelcontextprotocol/related-task":{"task\u0049d":"t\u002d1"}}"#
        )),
        Ok(Some("t-1".into()))
    );
    assert_eq!(related(&with(r#"{"other":1}"#)), Ok(None));
    for bad in [
        r#"{"io.modelcontextprotocol/related-task":{"taskId":1}}"#,
        r#"{"io.modelcontextprotocol/related-task":{}}"#,
        r#"{"io.modelcontextprotocol/related-task":"t-1"}"#,
        r#"{"io.modelcontextprotocol/related-task":{"taskId":"a","taskId":"b"}}"#,
        r#"{"io.modelcontextprotocol/related-task":{"TaskId":"a","taskId":"b"}}"#,
        r#"{"io.modelcontextprotocol/Related-Task":{"taskId":"a"}}"#,
    ] {
        assert!(related(&with(bad)).is_err(), "{bad}");
    }
}

#[test]
fn the_task_id_is_kept_and_must_be_a_string() {
    let task = |body: &str| inspect(body.as_bytes()).map(|i| i.messages[0].task_id.clone());
    assert_eq!(
        task(r#"{"jsonrpc":"2.0","id":1,"method":"tasks/get","params":{"taskId":"t-1"}}"#),
        Ok(Some("t-1".into()))
    );
    assert_eq!(
        task(r#"{"jsonrpc":"2.0","id":1,"method":"tasks/get","params":{"taskId":"t\u002d1"}}"#),
        Ok(Some("t-1".into()))
    );
    // A task id is a server-minted handle the gateway opens: another type is refused
    // (an upstream would read it, the gateway could not open it).
    for other in ["1", "null", "{}", "[\"t-1\"]"] {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tasks/get","params":{{"taskId":{other}}}}}"#
        );
        assert!(
            matches!(task(&body), Err(Malformed::InvalidParams(_))),
            "{body}"
        );
    }
    assert_eq!(
        task(r#"{"jsonrpc":"2.0","id":1,"result":{},"params":{"taskId":"t-1"}}"#),
        Ok(None)
    );
    assert_eq!(
        task(
            r#"{"jsonrpc":"2.0","id":1,"method":"tasks/get","params":{"taskId":"t-1","TaskId":"t-2"}}"#
        ),
        Err(Malformed::NotJsonRpc(KEY_SPELLING))
    );
}

#[test]
fn a_repeated_or_respelled_version_claim_is_refused() {
    let duplicate = r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/protocolVersion":"2025-11-25"}}}"#;
    assert_eq!(
        inspect(duplicate.as_bytes()),
        Err(Malformed::NotJsonRpc(DUPLICATE_KEY))
    );
    for body in [
        // A reader folding case (Go's encoding/json for a struct's `_meta`) would find a
        // claim the gateway did not see, or another one.
        r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_Meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{},"_META":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","IO.modelcontextprotocol/protocolVersion":"2025-11-25"}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{"io.modelcontextprotocol/protocolver\u017fion":"2025-11-25"}}}"#,
    ] {
        assert_eq!(
            inspect(body.as_bytes()),
            Err(Malformed::NotJsonRpc(KEY_SPELLING)),
            "{body}"
        );
        assert!(fast::single_message(body.as_bytes()).is_none(), "{body}");
    }
}

#[test]
fn batches_keep_every_id() {
    let b = inspect(br#"[{"jsonrpc":"2.0","id":"a","method":"ping"},{"jsonrpc":"2.0","method":"notifications/x"},{"jsonrpc":"2.0","id":2,"method":"tools/list"}]"#).unwrap();
    assert!(b.batch);
    assert_eq!(b.request_ids().collect::<Vec<_>>(), ["\"a\"", "2"]);
}

#[test]
fn duplicate_keys_anywhere_are_refused() {
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"x":1,"x":2}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","n\u0061me":"b"}}"#,
        r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"id":3,"method":"ping"}]"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"deep":[{"k":1,"k":1}]}}"#,
    ] {
        assert_eq!(
            inspect(body.as_bytes()),
            Err(Malformed::NotJsonRpc(DUPLICATE_KEY)),
            "{body}"
        );
    }
}

#[test]
fn refuses_what_is_not_strict_json_rpc() {
    let not_json: &[&[u8]] = &[
        b"",
        b"{not json",
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"} trailing",
        b"{\"jsonrpc\":\"2.0\",/*c*/\"id\":1,\"method\":\"ping\"}",
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"p\xFFing\"}",
    ];
    for body in not_json {
        assert_eq!(inspect(body), Err(Malformed::NotJson), "{body:?}");
    }
    for body in [
        "[]",
        "42",
        "\"x\"",
        "[1]",
        r#"{"jsonrpc":"1.0","id":1,"method":"x"}"#,
        r#"{"id":1,"method":"x"}"#,
        r#"{"jsonrpc":"2.0","id":{"a":1},"method":"x"}"#,
        r#"{"jsonrpc":"2.0","id":1}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":7}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"x","result":{}}"#,
        r#"{"jsonrpc":"2.0","result":{}}"#,
    ] {
        assert!(
            matches!(inspect(body.as_bytes()), Err(Malformed::NotJsonRpc(_))),
            "{body}"
        );
    }
}

#[test]
fn calls_without_a_string_target_are_invalid_params() {
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":["echo"]}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"name":"x"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":[]}"#,
    ] {
        assert!(
            matches!(inspect(body.as_bytes()), Err(Malformed::InvalidParams(_))),
            "{body}"
        );
    }
}

#[test]
fn deep_nesting_fails_without_overflowing_the_stack() {
    let depth = 10_000;
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"a":{}{}}}}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    );
    assert!(inspect(body.as_bytes()).is_err());
    let objects = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{}1{}}}"#,
        r#"{"a":"#.repeat(depth),
        "}".repeat(depth)
    );
    assert!(inspect(objects.as_bytes()).is_err());
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A small deterministic fuzz: mutations of a valid message.
    let base = br#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"m":"\u00e9"}}}]"#;
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..20_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let mut body = base.to_vec();
        let edits = (state % 4) as usize + 1;
        for e in 0..edits {
            let at = ((state >> (8 * e)) as usize) % body.len();
            body[at] = (state >> (3 * e)) as u8;
        }
        let _ = inspect(&body);
    }
}

#[test]
fn error_bodies_answer_the_request_ids() {
    let single = inspect(br#"{"jsonrpc":"2.0","id":"x","method":"ping"}"#).unwrap();
    let body: serde_json::Value =
        serde_json::from_str(&error_body(Some(&single), -32001, "upstream \"down\"")).unwrap();
    assert_eq!(body["id"], "x");
    assert_eq!(body["error"]["code"], -32001);
    assert_eq!(body["error"]["message"], "upstream \"down\"");

    let batch = inspect(
        br#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"ping"}]"#,
    )
    .unwrap();
    let body: serde_json::Value =
        serde_json::from_str(&error_body(Some(&batch), -32001, "down")).unwrap();
    assert_eq!(body[0]["id"], 1);
    assert_eq!(body[1]["id"], 2);

    let none: serde_json::Value =
        serde_json::from_str(&error_body(None, -32700, "parse error")).unwrap();
    assert!(none["id"].is_null());
}

/// What a lenient upstream parser (last duplicate wins, any JSON) would call.
fn upstream_view(body: &[u8]) -> Vec<(String, Option<String>)> {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return vec![];
    };
    let items = match value {
        serde_json::Value::Array(a) => a,
        other => vec![other],
    };
    items
        .iter()
        .filter_map(|m| {
            let method = m.get("method")?.as_str()?.to_string();
            let target = m
                .get("params")
                .and_then(|p| p.get("name").or_else(|| p.get("uri")))
                .and_then(|v| v.as_str())
                .map(str::to_string);
            Some((method, target))
        })
        .collect()
}

#[test]
fn whatever_the_upstream_would_call_the_inspector_sees() {
    // Mutations of a batch that hides a call: whenever the inspector accepts a body, the
    // tool names a lenient upstream parser would call are exactly the ones it reports.
    let base = br#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_repo","arguments":{"x":"y"}}}]"#;
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut accepted = 0;
    for _ in 0..50_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let mut body = base.to_vec();
        let at = (state as usize) % body.len();
        let alphabet = br#"{}[]",:\e"#;
        body[at] = alphabet[((state >> 20) as usize) % alphabet.len()];
        let Ok(inspected) = inspect(&body) else {
            continue;
        };
        accepted += 1;
        let ours: Vec<(String, Option<String>)> = inspected
            .messages
            .iter()
            .filter_map(|m| match &m.kind {
                MessageKind::Call { method, target } => Some((method.clone(), target.clone())),
                MessageKind::Response => None,
            })
            .filter(|(m, _)| m == "tools/call")
            .collect();
        let theirs: Vec<(String, Option<String>)> = upstream_view(&body)
            .into_iter()
            .filter(|(m, _)| m == "tools/call")
            .collect();
        assert_eq!(ours, theirs, "{}", String::from_utf8_lossy(&body));
    }
    assert!(
        accepted > 100,
        "the mutations should leave many bodies valid"
    );
}

#[test]
fn a_body_in_another_encoding_is_refused_as_such() {
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let with_bom = [&[0xEF, 0xBB, 0xBF][..], ping.as_bytes()].concat();
    let utf16le: Vec<u8> = ping.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let utf16be: Vec<u8> = ping.encode_utf16().flat_map(u16::to_be_bytes).collect();
    let utf16_bom = [&[0xFF, 0xFE][..], &utf16le].concat();
    let utf32le: Vec<u8> = ping
        .chars()
        .flat_map(|c| (c as u32).to_le_bytes())
        .collect();
    for body in [with_bom, utf16le, utf16be, utf16_bom, utf32le] {
        assert!(
            matches!(inspect(&body), Err(Malformed::Encoding(_))),
            "{body:?}"
        );
    }
    assert!(inspect(ping.as_bytes()).is_ok());
}

#[test]
fn other_spellings_of_decided_keys_are_refused() {
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","Name":"admin-delete"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"Name":"admin-delete","name":"echo"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","NAME":"x"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","nAmE":"x"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","N\u0061me":"x"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","\u004eame":"x"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"a://b","URI":"c://d"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"Name":"x"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"ping","Method":"tools/call"}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"ping","METHOD":"tools/call"}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"},"Params":{"name":"x"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"},"param\u017f":{"name":"x"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"},"paramſ":{"name":"x"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"},"PARAMſ":{"name":"x"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"ping","JSONRPC":"1.0"}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"ping","Id":2}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"ping","ID":2}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"ping","Result":{}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"ping","ERROR":{}}"#,
        r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"ping","Method":"x"}]"#,
    ] {
        assert_eq!(
            inspect(body.as_bytes()),
            Err(Malformed::NotJsonRpc(KEY_SPELLING)),
            "{body}"
        );
        assert!(fast::single_message(body.as_bytes()).is_none(), "{body}");
    }
    // Kelvin sign: no decided key has a `k`, so it only matters with one that would.
    assert_eq!(key_spelling_of("\u{212a}ey", &["key"]), Some("key"));
    assert_eq!(key_spelling_of("\u{17f}", &["s"]), Some("s"));
    assert_eq!(key_spelling_of("key", &["key"]), None);
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","names":"x","Nam":"y","arguments":{"Name":"z","METHOD":"w"}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","_meta":{"Name":"x"}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"ping","idx":2,"_meta":{}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"ping","ıd":2}"#,
    ] {
        assert!(inspect(body.as_bytes()).is_ok(), "{body}");
    }
}

/// A JSON document with object members in document order.
enum Doc {
    Obj(Vec<(String, Doc)>),
    Arr(Vec<Doc>),
    Str(String),
    Other,
}

impl<'de> Deserialize<'de> for Doc {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Doc, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Doc;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("JSON")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Doc, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, Doc>()? {
                    members.push(member);
                }
                Ok(Doc::Obj(members))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Doc, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Doc>()? {
                    items.push(item);
                }
                Ok(Doc::Arr(items))
            }
            fn visit_str<E>(self, v: &str) -> Result<Doc, E> {
                Ok(Doc::Str(v.to_string()))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Doc, E> {
                Ok(Doc::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Doc, E> {
                Ok(Doc::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Doc, E> {
                Ok(Doc::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Doc, E> {
                Ok(Doc::Other)
            }
            fn visit_unit<E>(self) -> Result<Doc, E> {
                Ok(Doc::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// What an upstream that matches keys case-insensitively (Go's `encoding/json`: Unicode
/// simple folding, the last matching member in the document wins) would call.
fn folding_upstream_view(body: &[u8]) -> Vec<(String, Option<String>)> {
    fn fold(s: &str) -> String {
        s.chars()
            .map(|c| match c {
                '\u{17F}' => 's',
                '\u{212A}' => 'k',
                c => c.to_ascii_lowercase(),
            })
            .collect()
    }
    fn get<'a>(members: &'a [(String, Doc)], key: &str) -> Option<&'a Doc> {
        members
            .iter()
            .rev()
            .find(|(k, _)| fold(k) == key)
            .map(|(_, v)| v)
    }
    fn string(doc: &Doc) -> Option<String> {
        match doc {
            Doc::Str(s) => Some(s.clone()),
            _ => None,
        }
    }
    let Ok(doc) = serde_json::from_slice::<Doc>(body) else {
        return vec![];
    };
    let items = match doc {
        Doc::Arr(items) => items,
        other => vec![other],
    };
    items
        .iter()
        .filter_map(|m| {
            let Doc::Obj(m) = m else { return None };
            let method = string(get(m, "method")?)?;
            let target = match get(m, "params") {
                Some(Doc::Obj(p)) => get(p, "name").and_then(string),
                _ => None,
            };
            Some((method, target))
        })
        .collect()
}

#[test]
fn whatever_a_case_folding_upstream_would_call_the_inspector_sees() {
    let base = r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"x":"y"},"xame":"delete_repo"}},{"jsonrpc":"2.0","id":3,"method":"ping","xethod":"tools/call","params":{"name":"echo"}}]"#;
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut accepted = 0;
    for _ in 0..20_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        // Respell one or two `x` as the letter it hides, in some case, and change the case
        // of a letter somewhere.
        let mut chars: Vec<String> = base.chars().map(String::from).collect();
        let xs: Vec<usize> = (0..chars.len()).filter(|i| chars[*i] == "x").collect();
        for pick in [state % 7, (state >> 8) % 7] {
            let at = xs[(pick as usize) % xs.len()];
            let next = chars.get(at + 1).cloned().unwrap_or_default();
            chars[at] = match (next.as_str(), (state >> 16) % 3) {
                ("a", 0) => "n".into(),
                ("a", _) => "N".into(),
                ("e", 0) => "m".into(),
                ("e", _) => "M".into(),
                ("r", 0) => "P".into(),
                ("r", _) => "p".into(),
                _ => "x".into(),
            };
        }
        let flip = ((state >> 24) as usize) % chars.len();
        if chars[flip].len() == 1 {
            chars[flip] = match chars[flip].as_str() {
                "s" => "\u{17f}".into(),
                c => c.to_ascii_uppercase(),
            };
        }
        let body = chars.concat();
        let Ok(inspected) = inspect(body.as_bytes()) else {
            continue;
        };
        accepted += 1;
        let ours: Vec<(String, Option<String>)> = inspected
            .messages
            .iter()
            .filter_map(|m| match &m.kind {
                MessageKind::Call { method, target } => Some((method.clone(), target.clone())),
                MessageKind::Response => None,
            })
            .collect();
        let calls = |v: Vec<(String, Option<String>)>| {
            v.into_iter()
                .filter(|(m, _)| m == "tools/call")
                .collect::<Vec<_>>()
        };
        assert_eq!(
            calls(ours),
            calls(folding_upstream_view(body.as_bytes())),
            "{body}"
        );
    }
    assert!(accepted > 100, "only {accepted} bodies accepted");
}

#[test]
fn a_request_state_is_read_once_as_a_string_in_params_only() {
    let state = |body: &str| {
        inspect(body.as_bytes()).map(|i| {
            i.messages
                .iter()
                .map(|m| m.request_state.as_deref().map(str::to_string))
                .collect::<Vec<_>>()
        })
    };
    for (body, want) in [
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","requestState":"s1"}}"#,
            "s1",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","request\u0053tate":"s\u0031"}}"#,
            "s1",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"requestState":"s1","name":"p"}}"#,
            "s1",
        ),
    ] {
        assert_eq!(state(body), Ok(vec![Some(want.to_string())]), "{body}");
    }
    // Elsewhere it is ordinary data: tool arguments, `_meta`.
    assert_eq!(
        state(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"requestState":"x"},"_meta":{"requestState":"y"}}}"#
        ),
        Ok(vec![None])
    );
    // Two of them (however spelled), another type, another spelling a case-folding
    // upstream would read, or beside `params`: refused.
    for (body, want) in [
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","requestState":"s1","requestState":"raw"}}"#,
            Malformed::NotJsonRpc(DUPLICATE_KEY),
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","requestState":"s1","request\u0053tate":"raw"}}"#,
            Malformed::NotJsonRpc(DUPLICATE_KEY),
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","requestState":7}}"#,
            Malformed::InvalidParams(BAD_STATE),
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","requestState":null}}"#,
            Malformed::InvalidParams(BAD_STATE),
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","requestState":["s1"]}}"#,
            Malformed::InvalidParams(BAD_STATE),
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","requestState":"s1","RequestState":"raw"}}"#,
            Malformed::NotJsonRpc(KEY_SPELLING),
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","requestſtate":"raw"}}"#,
            Malformed::NotJsonRpc(KEY_SPELLING),
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","requestState":"s1","params":{"name":"a"}}"#,
            Malformed::NotJsonRpc(MISPLACED_STATE),
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","RequestState":"s1","params":{"name":"a"}}"#,
            Malformed::NotJsonRpc(KEY_SPELLING),
        ),
    ] {
        assert_eq!(state(body), Err(want.clone()), "{body}");
        assert!(fast::single_message(body.as_bytes()).is_none(), "{body}");
    }
    // The fast path reads a plain one itself.
    let plain = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","requestState":"s1"}}"#;
    assert!(fast::single_message(plain).is_some());
}

#[test]
fn a_method_the_named_revision_removed_needs_no_target() {
    let removed = inspect(
        br#"{"jsonrpc":"2.0","id":9,"method":"resources/subscribe","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
    )
    .unwrap();
    assert_eq!(
        removed.messages[0].kind,
        MessageKind::Call {
            method: "resources/subscribe".into(),
            target: None
        }
    );
    // Older revisions have the method, and it needs its `uri`.
    for body in [
        &br#"{"jsonrpc":"2.0","id":9,"method":"resources/subscribe","params":{}}"#[..],
        br#"{"jsonrpc":"2.0","id":9,"method":"resources/subscribe","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2025-11-25"}}}"#,
    ] {
        assert_eq!(inspect(body), Err(Malformed::InvalidParams(BAD_TARGET)));
    }
}

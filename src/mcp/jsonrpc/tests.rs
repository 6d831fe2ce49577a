use super::*;

fn call(id: Option<&str>, method: &str, target: Option<&str>) -> Message {
    Message {
        id: id.map(Box::from),
        kind: MessageKind::Call {
            method: method.into(),
            target: target.map(str::to_string),
        },
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
        b"\xEF\xBB\xBF{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}",
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

/// Bodies clients send, and near misses of them.
const TEMPLATES: &[&str] = &[
    r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}}"#,
    r#" {"method":"resources/read","params":{"uri":"file:///a/b.txt"},"id":"r-7","jsonrpc":"2.0"} "#,
    r#"{"jsonrpc":"2.0","id":-3,"method":"prompts/get","params":{"name":"p","arguments":{"x":[1,2.5,true,null,{"y":{}}]}}}"#,
    r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    r#"{"jsonrpc":"2.0","id":9,"result":{"content":[{"type":"text","text":"ok"}],"isError":false}}"#,
    r#"{"jsonrpc":"2.0","id":4,"error":{"code":-32601,"message":"nope"}}"#,
    r#"{"jsonrpc":"2.0","id":2,"method":"tools/list","params":null}"#,
    r#"{"jsonrpc":"2.0","id":2,"method":"tools/list","params":[]}"#,
    r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"a","name":"b"}}"#,
    r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"arguments":{"k":1,"k":2},"name":"a"}}"#,
    r#"{"jsonrpc":"1.0","id":{},"method":7,"params":"x"}"#,
    r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":12}}"#,
    r#"{"jsonrpc":"2.0","id":1e400,"method":"ping","params":{"n":123456789012345678901234567890}}"#,
    r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#,
    r#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"many","arguments":{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10}}}"#,
    r#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"many","arguments":{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"a":10}}}"#,
    r#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"many","arguments":{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"i":10}}}"#,
];

#[test]
fn the_fast_path_reads_every_body_as_serde_does() {
    // Bytes that change JSON's meaning, spliced in at random places.
    let splices: &[&str] = &[
        "{",
        "}",
        "[",
        "]",
        ":",
        ",",
        "\"",
        "\\",
        "\\u0041",
        "\\ud800",
        "0",
        "-",
        "1e5",
        ".5",
        "true",
        "nul",
        " ",
        "\t",
        "\u{e9}",
        "\u{1}",
        r#""name":"x","#,
        r#""id":[1],"#,
        r#""jsonrpc":"2.0","#,
        r#"{"a":{"a":1,"a":2}}"#,
    ];
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut fast, mut total) = (0, 0);
    for round in 0..30_000 {
        let template = TEMPLATES[round % TEMPLATES.len()];
        let mut body = template.as_bytes().to_vec();
        // A third of the bodies unchanged (they must take the fast path), the rest with
        // one to three edits.
        if round % 3 != 0 {
            for _ in 0..=next() % 3 {
                let at = (next() as usize) % (body.len() + 1);
                match next() % 3 {
                    0 => {
                        let s = splices[(next() as usize) % splices.len()];
                        body.splice(at..at, s.bytes());
                    }
                    1 if at < body.len() => {
                        body.remove(at);
                    }
                    _ => body.truncate(at.max(1)),
                }
            }
        }
        total += 1;
        let serde = inspect_with_serde(&body);
        if let Some(message) = fast::single_message(&body) {
            fast += 1;
            assert_eq!(
                finish(vec![message], false),
                serde,
                "{}",
                String::from_utf8_lossy(&body)
            );
        }
        assert_eq!(inspect(&body), serde, "{}", String::from_utf8_lossy(&body));
    }
    // Every unchanged template without an error in it takes the fast path.
    for template in &TEMPLATES[..8] {
        assert!(
            fast::single_message(template.as_bytes()).is_some(),
            "{template}"
        );
    }
    assert!(fast > total / 5, "fast path taken {fast} of {total} times");
}

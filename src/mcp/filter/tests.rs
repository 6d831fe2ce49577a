use super::*;

fn only_echo(kind: ListKind, name: &str) -> bool {
    kind == ListKind::Tools && name == "echo"
}

fn filtered(text: &str) -> String {
    let out = filter_message(text, &only_echo).unwrap();
    out.rewritten.unwrap_or_else(|| text.to_string())
}

#[test]
fn removes_items_and_keeps_everything_else() {
    let body = r#"{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"echo","description":"x","inputSchema":{"type":"object"}},{"name":"get-env"},{"description":"nameless"}],"nextCursor":"c2","_meta":{"a":1}}}"#;
    let out = filter_message(body, &only_echo).unwrap();
    assert_eq!(
        out.rewritten.as_deref(),
        Some(
            r#"{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"echo","description":"x","inputSchema":{"type":"object"}}],"nextCursor":"c2","_meta":{"a":1}}}"#
        )
    );
    assert_eq!(out.removed, vec![(ListKind::Tools, 2)]);
}

#[test]
fn any_id_and_any_result_with_list_members_is_filtered() {
    // Ids that a client matches loosely (`Number(id)`), no id at all, an id after
    // the result, a result with several list members.
    for (body, want) in [
        (
            r#"{"jsonrpc":"2.0","id":"1","result":{"tools":[{"name":"x"},{"name":"echo"}]}}"#,
            r#"{"jsonrpc":"2.0","id":"1","result":{"tools":[{"name":"echo"}]}}"#,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1.0,"result":{"tools":[{"name":"x"}]}}"#,
            r#"{"jsonrpc":"2.0","id":1.0,"result":{"tools":[]}}"#,
        ),
        (
            r#"{"result":{"tools":[{"name":"x"}]},"jsonrpc":"2.0","id":99}"#,
            r#"{"result":{"tools":[]},"jsonrpc":"2.0","id":99}"#,
        ),
        (
            r#"{"jsonrpc":"2.0","id":2,"result":{"prompts":[{"name":"p"}],"resources":[{"uri":"a://b"}],"resourceTemplates":[{"uriTemplate":"a://{x}"}],"tools":[{"name":"echo"}]}}"#,
            r#"{"jsonrpc":"2.0","id":2,"result":{"prompts":[],"resources":[],"resourceTemplates":[],"tools":[{"name":"echo"}]}}"#,
        ),
        (
            r#"{"jsonrpc":"2.0","id":2,"result":{"t\u006fols":[{"name":"x"}]}}"#,
            r#"{"jsonrpc":"2.0","id":2,"result":{"t\u006fols":[]}}"#,
        ),
    ] {
        assert_eq!(filtered(body), want, "{body}");
    }
}

#[test]
fn messages_without_lists_pass_untouched() {
    for text in [
        r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{}}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#,
        r#"{"jsonrpc":"2.0","id":3,"error":{"code":-1,"message":"no"}}"#,
        r#"{"jsonrpc":"2.0","id":3,"result":{"content":[{"type":"text","text":"tools"}]}}"#,
        r#"{"jsonrpc":"2.0","id":3,"result":{"capabilities":{"tools":{"listChanged":true}}}}"#,
        r#"{"jsonrpc":"2.0","id":3,"result":[1]}"#,
        r#""just a string""#,
    ] {
        let out = filter_message(text, &only_echo).unwrap();
        assert_eq!(out.rewritten, None, "{text}");
        assert!(!out.dropped, "{text}");
    }
}

#[test]
fn batches_filter_each_answer_and_drop_withheld_notifications() {
    let body = r#"[{"jsonrpc":"2.0","id":"a","result":{"tools":[{"name":"echo"},{"name":"x"}]}}, {"jsonrpc":"2.0","id":"b","result":{}},{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"secret://x"}},{"jsonrpc":"2.0","id":"c","result":{"prompts":[{"name":"p"}]}}]"#;
    assert_eq!(
        filtered(body),
        r#"[{"jsonrpc":"2.0","id":"a","result":{"tools":[{"name":"echo"}]}},{"jsonrpc":"2.0","id":"b","result":{}},{"jsonrpc":"2.0","id":"c","result":{"prompts":[]}}]"#
    );
    let only_notes = r#"[{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"secret://x"}}]"#;
    assert!(filter_message(only_notes, &only_echo).unwrap().dropped);
}

#[test]
fn resource_updates_are_shown_only_for_readable_uris() {
    let keep = |kind: ListKind, name: &str| kind == ListKind::Resources && name == "ok://1";
    let note = |params: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{params}}}"#
        )
    };
    let dropped = |text: &str| filter_message(text, &keep).unwrap().dropped;
    assert!(!dropped(&note(r#"{"uri":"ok://1"}"#)));
    assert!(dropped(&note(r#"{"uri":"secret://1"}"#)));
    assert!(dropped(&note(r#"{"uri":"ok://1","uri":"secret://1"}"#)));
    assert!(dropped(&note(r#"{}"#)));
    assert!(dropped(&note(r#"[]"#)));
    assert!(dropped(
        r#"{"jsonrpc":"2.0","method":"notifications/resources/updated"}"#
    ));
    let list_changed = r#"{"jsonrpc":"2.0","method":"notifications/resources/list_changed"}"#;
    assert!(!dropped(list_changed));
}

#[test]
fn unreadable_messages_are_errors() {
    for body in [
        r#"{"jsonrpc":"2.0","id":3,"result":{"tools":"nope"}}"#,
        r#"{"jsonrpc":"2.0","id":3,"result":{"tools":{}}}"#,
        r#"{"jsonrpc":"2.0","id":3,"result":{"tools":[],"tools":[{"name":"x"}]}}"#,
        r#"{"jsonrpc":"2.0","id":3,"result":{"tools":[]},"result":{"tools":[{"name":"x"}]}}"#,
        r#"{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"echo"}]"#,
        r#"{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"x"}]}} trailing"#,
        r#"[{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"x"}]}},]"#,
        r#"{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"x"}]},"x":NaN}"#,
        "not json",
        "",
    ] {
        assert!(filter_message(body, &only_echo).is_err(), "{body}");
    }
    assert_eq!(filter_message("nope", &only_echo), Err(NOT_JSON));
}

#[test]
fn duplicate_name_members_hide_the_item() {
    let body = r#"{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"echo","name":"delete"}]}}"#;
    let out = filter_message(body, &only_echo).unwrap();
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
        let result =
            format!(r#"{{"nextCursor":"c{round}","tools":{list},"_meta":{{"k":[null,true]}}}}"#);
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

        let out = filter_message(&body, &keep).unwrap();
        let got: Value = serde_json::from_str(out.rewritten.as_deref().unwrap_or(&body)).unwrap();
        assert_eq!(got, expected, "{body}");
        assert_eq!(out.removed, vec![(ListKind::Tools, removed)], "{body}");
        assert_eq!(out.rewritten.is_none(), removed == 0, "{body}");
    }
}

#[test]
fn json_bodies_are_filtered_whole_whatever_their_type() {
    let mut r = JsonListRewriter::new(true);
    let body = br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"echo"},{"name":"x"}]}}"#;
    for cut in 0..body.len() {
        let mut r2 = JsonListRewriter::new(true);
        assert_eq!(r2.push(&body[..cut], false, &only_echo), Ok(None));
        let (out, _) = r2.push(&body[cut..], true, &only_echo).unwrap().unwrap();
        assert_eq!(
            out,
            br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"echo"}]}}"#.to_vec()
        );
    }
    assert_eq!(r.push(&body[..10], false, &only_echo), Ok(None));
    let (_, removed) = r.push(&body[10..], true, &only_echo).unwrap().unwrap();
    assert_eq!(removed, vec![(ListKind::Tools, 1)]);
}

#[test]
fn a_filtered_list_is_private_to_its_caller_whatever_the_upstream_said() {
    for (answer, want) in [
        (
            r#"{"id":1,"result":{"cacheScope":"public","ttlMs":60000,"tools":[{"name":"echo"},{"name":"x"}]}}"#,
            r#"{"id":1,"result":{"cacheScope":"private","ttlMs":60000,"tools":[{"name":"echo"}]}}"#,
        ),
        // After the list, and with nothing removed: still judged for this caller.
        (
            r#"{"id":1,"result":{"tools":[{"name":"echo"}],"ttlMs":5,"cacheScope":"public"}}"#,
            r#"{"id":1,"result":{"tools":[{"name":"echo"}],"ttlMs":5,"cacheScope":"private"}}"#,
        ),
        (
            r#"{"id":1,"result":{"tools":[{"name":"x"}],"cacheScope":7}}"#,
            r#"{"id":1,"result":{"tools":[],"cacheScope":"private"}}"#,
        ),
        (
            r#"[{"id":1,"result":{"cacheScope":"public","prompts":[]}},{"id":2,"result":{"cacheScope":"public"}}]"#,
            r#"[{"id":1,"result":{"cacheScope":"private","prompts":[]}},{"id":2,"result":{"cacheScope":"public"}}]"#,
        ),
    ] {
        assert_eq!(filtered(answer), want, "{answer}");
    }
    // Already private, or absent: untouched, byte for byte.
    for answer in [
        r#"{"id":1,"result":{"cacheScope":"private","tools":[{"name":"echo"}]}}"#,
        r#"{"id":1,"result":{"tools":[{"name":"echo"}]}}"#,
    ] {
        assert_eq!(filter_message(answer, &only_echo).unwrap().rewritten, None);
    }
    assert_eq!(
        filter_message(
            r#"{"id":1,"result":{"cacheScope":"public","cacheScope":"private","tools":[]}}"#,
            &only_echo
        ),
        Err(DUPLICATE)
    );
}

#[test]
fn non_json_bodies_pass_only_when_they_cannot_hold_a_list() {
    let push =
        |success: bool, body: &[u8]| JsonListRewriter::new(success).push(body, true, &only_echo);
    assert!(push(true, b"not json [").is_err());
    assert!(push(true, b"{tools: 1}").is_err());
    assert!(push(true, b"+AFsAXQ-").is_err(), "UTF-7 for []");
    assert!(push(true, b"caf\xc3\xa9").is_err());
    // The legacy transport's answer to a POST: text no reading can make a list of.
    assert_eq!(
        push(true, b"Accepted").unwrap().unwrap().0,
        b"Accepted".to_vec()
    );
    assert!(push(
        true,
        b"{\"result\":{\"tools\":[{\"name\":\"x\"}]},\"a\":NaN}"
    )
    .is_err());
    assert!(push(true, b"\xFF{}").is_err());
    assert_eq!(push(true, b" \r\n").unwrap().unwrap().0, b" \r\n".to_vec());
    assert_eq!(
        push(false, b"<html>").unwrap().unwrap().0,
        b"<html>".to_vec()
    );
    // JSON on an error status is still filtered.
    let (out, _) = push(false, br#"{"id":1,"result":{"tools":[{"name":"x"}]}}"#)
        .unwrap()
        .unwrap();
    assert_eq!(out, br#"{"id":1,"result":{"tools":[]}}"#.to_vec());
    let mut big = JsonListRewriter::new(true);
    assert!(big
        .push(&vec![b' '; MAX_JSON_BODY + 1], false, &only_echo)
        .is_err());
}

#[test]
fn pinned_tools_are_judged_by_their_whole_item() {
    let everything = |_: ListKind, _: &str| true;
    let asked = std::cell::RefCell::new(Vec::new());
    // Shows a tool only while its description is the reviewed one.
    let pinned = |name: &str, item: &str| {
        asked.borrow_mut().push(name.to_string());
        item.contains(r#""description":"reviewed""#)
    };
    let rules = Rules {
        pinned: Some(&pinned),
        ..Rules::policy(&everything)
    };
    let body = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a","description":"reviewed"},{"name":"b","description":"changed"}],"prompts":[{"name":"p","description":"changed"}]}}"#;
    let out = filter_message_with(body, rules).unwrap();
    assert_eq!(
        out.rewritten.as_deref(),
        Some(
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a","description":"reviewed"}],"prompts":[{"name":"p","description":"changed"}]}}"#
        )
    );
    // Prompts are not tools: only the two tools were asked about.
    assert_eq!(*asked.borrow(), ["a", "b"]);
    // A tool the policy hides is not asked about at all.
    asked.borrow_mut().clear();
    let rules = Rules {
        pinned: Some(&pinned),
        ..Rules::policy(&only_echo)
    };
    let out = filter_message_with(
        r#"{"result":{"tools":[{"name":"x"},{"name":"echo","description":"reviewed"}]}}"#,
        rules,
    )
    .unwrap();
    assert_eq!(
        out.rewritten.as_deref(),
        Some(r#"{"result":{"tools":[{"name":"echo","description":"reviewed"}]}}"#)
    );
    assert_eq!(*asked.borrow(), ["echo"]);
}

use super::*;
use crate::mcp::filter::{filter_message_with, Rules};
use crate::mcp::session::{self, IdentityDigest, RouteDigest};

fn key(seed: u8) -> Vec<u8> {
    (0..32u8)
        .map(|i| i.wrapping_mul(7).wrapping_add(seed))
        .collect()
}

fn keys() -> SessionKeys {
    SessionKeys::new(vec![("k1".into(), key(1)), ("k0".into(), key(2))]).unwrap()
}

fn alice() -> Digests {
    Digests {
        route: RouteDigest::of("r"),
        identity: IdentityDigest::of("https://idp", "alice", Some("agent")),
    }
}

const NOW: u64 = 1_800_000_000;

fn sealed_for(binding: Digests, literal: &str) -> String {
    seal_request_state(&keys(), literal, binding, NOW).unwrap()
}

#[test]
fn a_state_opens_only_for_the_caller_and_route_it_was_sealed_for() {
    let literal = r#"opaque-\u00e9-\"quoted\"-state"#;
    let sealed = sealed_for(alice(), literal);
    assert!(sealed.starts_with("rs1.k1."), "{sealed}");
    assert!(sealed
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)));
    let open =
        |sealed: &str, binding: Digests| open_request_state(&keys(), sealed, binding, NOW, None);
    assert_eq!(open(&sealed, alice()).as_deref(), Ok(literal));

    let mallory = Digests {
        identity: IdentityDigest::of("https://idp", "mallory", Some("agent")),
        ..alice()
    };
    let other_client = Digests {
        identity: IdentityDigest::of("https://idp", "alice", Some("other")),
        ..alice()
    };
    let other_route = Digests {
        route: RouteDigest::of("r2"),
        ..alice()
    };
    assert_eq!(open(&sealed, mallory), Err(UnsealError::WrongIdentity));
    assert_eq!(open(&sealed, other_client), Err(UnsealError::WrongIdentity));
    assert_eq!(open(&sealed, other_route), Err(UnsealError::WrongRoute));

    // Tampered anywhere in the payload, truncated, foreign characters, unknown key.
    let mut tampered = sealed.clone().into_bytes();
    let at = tampered.len() - 5;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    assert_eq!(open(&tampered, alice()), Err(UnsealError::Tampered));
    assert!(matches!(
        open(&sealed[..sealed.len() - 4], alice()),
        Err(UnsealError::Tampered | UnsealError::Malformed)
    ));
    for malformed in [
        "",
        "rs1",
        "rs1.k1.",
        "rs1.k1.!!!!",
        "plain-upstream-state",
        "rs1..x",
    ] {
        assert_eq!(
            open(malformed, alice()),
            Err(UnsealError::Malformed),
            "{malformed}"
        );
    }
    let others = SessionKeys::new(vec![("k9".into(), key(3))]).unwrap();
    assert_eq!(
        open_request_state(&others, &sealed, alice(), NOW, None),
        Err(UnsealError::UnknownKey)
    );
    // Too old, when a maximum age is configured.
    let max_age = Some(Duration::from_secs(60));
    assert_eq!(
        open_request_state(&keys(), &sealed, alice(), NOW + 61, max_age),
        Err(UnsealError::Expired)
    );
    assert!(open_request_state(&keys(), &sealed, alice(), NOW + 59, max_age).is_ok());
}

#[test]
fn a_session_id_is_never_a_state_and_a_state_never_a_session_id() {
    let keys = keys();
    let session_id = session::seal(&keys, "upstream-session", alice(), NOW).unwrap();
    let state = sealed_for(alice(), "upstream-session");
    assert_eq!(
        open_request_state(&keys, &session_id, alice(), NOW, None),
        Err(UnsealError::Malformed)
    );
    assert_eq!(
        session::open(&keys, &state, alice(), NOW, None),
        Err(UnsealError::Malformed)
    );
    // Relabelled: the prefix is authenticated, so the seal no longer opens.
    let relabelled = format!("rs1{}", session_id.strip_prefix("v1").unwrap());
    assert_eq!(
        open_request_state(&keys, &relabelled, alice(), NOW, None),
        Err(UnsealError::Tampered)
    );
    let relabelled = format!("v1{}", state.strip_prefix("rs1").unwrap());
    assert_eq!(
        session::open(&keys, &relabelled, alice(), NOW, None),
        Err(UnsealError::Tampered)
    );
}

#[test]
fn only_a_single_request_may_present_a_state() {
    let one = |body: &str| inspect(body.as_bytes()).unwrap();
    let plain = one(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#);
    assert_eq!(presented_state(&plain), Ok(None));
    let retry = one(
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","requestState":"rs1.k1.abc"}}"#,
    );
    assert_eq!(presented_state(&retry), Ok(Some("rs1.k1.abc")));
    for refused in [
        r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","requestState":"s"}}]"#,
        r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"x","requestState":"s"}}]"#,
        r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"requestState":"s"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"result":{},"params":{"requestState":"s"}}"#,
    ] {
        assert!(presented_state(&one(refused)).is_err(), "{refused}");
    }
}

#[test]
fn the_upstream_gets_its_own_bytes_back_in_a_body_of_the_same_length() {
    // The original literal keeps its escapes; the client may have escaped the sealed one
    // and the member name.
    let original = r#"st\u00e9te \"with\" \\ escapes"#;
    let sealed = sealed_for(alice(), original);
    let escaped_sealed: String = sealed
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i % 5 == 0 {
                format!("\\u{:04x}", c as u32)
            } else {
                c.to_string()
            }
        })
        .collect();
    for (key, value) in [
        ("requestState", sealed.clone()),
        ("request\\u0053tate", sealed.clone()),
        ("requestState", escaped_sealed),
    ] {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"ask","{key}":"{value}","inputResponses":{{"a":{{"action":"accept"}}}}}}}}"#
        );
        let inspected = inspect(body.as_bytes()).unwrap();
        let literal = open_request_state(
            &keys(),
            presented_state(&inspected).unwrap().unwrap(),
            alice(),
            NOW,
            None,
        )
        .unwrap();
        let restored = restore_request_state(body.as_bytes(), &inspected, &literal).unwrap();
        assert_eq!(restored.len(), body.len());
        let text = String::from_utf8(restored.clone()).unwrap();
        assert!(text.contains(&format!(r#""{key}":"{original}""#)), "{text}");
        assert!(!text.contains("rs1."), "{text}");
        let value: serde_json::Value = serde_json::from_slice(&restored).unwrap();
        assert_eq!(
            value["params"]["requestState"],
            "st\u{e9}te \"with\" \\ escapes"
        );
        assert_eq!(value["params"]["inputResponses"]["a"]["action"], "accept");
        assert_eq!(value["params"]["name"], "ask");
    }
}

#[test]
fn a_body_that_disagrees_with_its_inspection_is_not_restored() {
    let sealed = sealed_for(alice(), "orig");
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"ask","requestState":"{sealed}"}}}}"#
    );
    let other = inspect(
        br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"ask","requestState":"rs1.k1.other"}}"#,
    )
    .unwrap();
    assert!(restore_request_state(body.as_bytes(), &other, "orig").is_err());
    let inspected = inspect(body.as_bytes()).unwrap();
    // A literal that is not JSON string content, or longer than the sealed value.
    assert!(restore_request_state(body.as_bytes(), &inspected, "a\"b").is_err());
    let long = "x".repeat(sealed.len() + 1);
    assert!(restore_request_state(body.as_bytes(), &inspected, &long).is_err());
    assert!(restore_request_state(body.as_bytes(), &inspected, "orig").is_ok());
}

#[test]
fn answers_that_may_carry_a_state_are_read() {
    for (body, read) in [
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#,
            true,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"x"}}"#,
            true,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"a:b"}}"#,
            true,
        ),
        (r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#, false),
        (r#"{"jsonrpc":"2.0","id":1,"result":{}}"#, false),
    ] {
        let inspected = inspect(body.as_bytes()).unwrap();
        assert_eq!(answer_may_carry_state(Some(&inspected)), read, "{body}");
    }
    assert!(!answer_may_carry_state(None));
    assert!(may_carry_state(r#"{"result":{"requestState":"x"}}"#));
    assert!(may_carry_state(r#"{"result":{"request\u0053tate":"x"}}"#));
    assert!(!may_carry_state(r#"{"result":{"content":[]}}"#));
}

fn seal_as_alice(literal: &str) -> Option<String> {
    Some(format!("SEALED[{}]", literal.len()))
}

#[test]
fn every_upstream_state_in_an_answer_is_sealed_or_the_answer_fails() {
    let rules = Rules {
        keep: None,
        seal_state: Some(&seal_as_alice),
        tasks: None,
        pinned: None,
    };
    for (text, want) in [
        (
            r#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"input_required","inputRequests":{"a":{}},"requestState":"abc"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"input_required","inputRequests":{"a":{}},"requestState":"SEALED[3]"}}"#,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"result":{"request\u0053tate":"a\"b","tools":[{"name":"x"}]}}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{"request\u0053tate":"SEALED[4]","tools":[{"name":"x"}]}}"#,
        ),
        (
            r#"[{"jsonrpc":"2.0","id":1,"result":{"requestState":"a"}},{"jsonrpc":"2.0","id":2,"result":{"requestState":"bb"}}]"#,
            r#"[{"jsonrpc":"2.0","id":1,"result":{"requestState":"SEALED[1]"}},{"jsonrpc":"2.0","id":2,"result":{"requestState":"SEALED[2]"}}]"#,
        ),
    ] {
        let out = filter_message_with(text, rules).unwrap();
        assert_eq!(out.rewritten.as_deref(), Some(want), "{text}");
    }
    // Not where the specification puts it: left alone (the request side refuses it if
    // a client ever sends it back somewhere).
    let elsewhere = r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"x","requestState":"y"}]}}"#;
    assert_eq!(
        filter_message_with(elsewhere, rules).unwrap().rewritten,
        None
    );
    for unreadable in [
        r#"{"jsonrpc":"2.0","id":1,"result":{"requestState":"a","requestState":"b"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"result":{"requestState":"a","request\u0053tate":"b"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"result":{"requestState":7}}"#,
        r#"{"jsonrpc":"2.0","id":1,"result":{"requestState":null}}"#,
        r#"{"jsonrpc":"2.0","id":1,"result":{"requestState":{"a":"b"}}}"#,
    ] {
        assert!(
            filter_message_with(unreadable, rules).is_err(),
            "{unreadable}"
        );
    }
    // A state that cannot be sealed fails the answer.
    let refuse = |_: &str| None;
    let failing = Rules {
        keep: None,
        seal_state: Some(&refuse),
        tasks: None,
        pinned: None,
    };
    assert!(filter_message_with(r#"{"result":{"requestState":"a"}}"#, failing).is_err());
}

#[test]
fn without_a_policy_an_unreadable_answer_passes_as_before() {
    use crate::mcp::filter::{JsonListRewriter, MAX_JSON_BODY};
    use crate::mcp::stream::{Hooks, SseFilter};
    let only_state = Rules {
        keep: None,
        seal_state: Some(&seal_as_alice),
        tasks: None,
        pinned: None,
    };
    // JSON: a readable state is sealed; text that is not JSON, or a state that is not
    // one string, passes unchanged (the raw state is refused when it comes back).
    for (body, want) in [
        (
            r#"{"jsonrpc":"2.0","id":1,"result":{"requestState":"abc"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{"requestState":"SEALED[3]"}}"#,
        ),
        ("not json {[", "not json {["),
        (
            r#"{"result":{"requestState":"a","requestState":"b"}}"#,
            r#"{"result":{"requestState":"a","requestState":"b"}}"#,
        ),
    ] {
        let out = JsonListRewriter::new(true)
            .push_with(body.as_bytes(), true, only_state)
            .unwrap()
            .unwrap();
        assert_eq!(String::from_utf8(out.0).unwrap(), want);
    }
    // With a policy the same unreadable answers are errors.
    let keep_all = |_: crate::mcp::filter::ListKind, _: &str| true;
    let with_policy = Rules {
        keep: Some(&keep_all),
        seal_state: Some(&seal_as_alice),
        tasks: None,
        pinned: None,
    };
    assert!(JsonListRewriter::new(true)
        .push_with(br#"{"result":{"requestState":1}}"#, true, with_policy)
        .is_err());
    // Too large to hold: passes on as it streams, without a policy only.
    let mut big = JsonListRewriter::new(true);
    assert_eq!(big.push_with(b"{", false, only_state), Ok(None));
    let huge = vec![b' '; MAX_JSON_BODY];
    let (first, _) = big.push_with(&huge, false, only_state).unwrap().unwrap();
    assert_eq!(first.len(), MAX_JSON_BODY + 1);
    let (rest, _) = big.push_with(b"}", true, only_state).unwrap().unwrap();
    assert_eq!(rest, b"}");
    let mut held = JsonListRewriter::new(true);
    assert!(held
        .push_with(&vec![b' '; MAX_JSON_BODY + 1], false, with_policy)
        .is_err());

    // Event streams: a state is sealed in any event; data that is not JSON passes, and
    // data without the name or an escape is not read at all.
    let endpoint = |_: &str| None;
    let errors = Vec::new;
    let hooks = Hooks {
        keep: None,
        seal_state: Some(&seal_as_alice),
        tasks: None,
        pinned: None,
        endpoint: &endpoint,
        error_messages: &errors,
    };
    let stream = "data: {\"id\":1,\"result\":{\"requestState\":\"abcd\"}}\n\ndata: C:\\path is not JSON\n\ndata: {not json either\n\n";
    let out = SseFilter::new(1 << 20).push(stream.as_bytes(), true, &hooks);
    assert_eq!(out.failure, None);
    assert_eq!(
        String::from_utf8(out.bytes).unwrap(),
        "data: {\"id\":1,\"result\":{\"requestState\":\"SEALED[4]\"}}\n\ndata: C:\\path is not JSON\n\ndata: {not json either\n\n"
    );
}

#[test]
fn only_revisions_with_request_state_have_their_answers_read() {
    assert!(version_has_request_state(Some(b"2026-07-28")));
    assert!(version_has_request_state(Some(b"2027-01-01")));
    assert!(!version_has_request_state(Some(b"2025-11-25")));
    assert!(!version_has_request_state(Some(b"2026-07-28x")));
    assert!(!version_has_request_state(None));
}

//! Task ids (tasks extension): request side (presented, opened, restored) and answer
//! side (sealed for the caller, withheld where the gateway cannot attribute them).

use super::*;
use crate::mcp::filter::{filter_message_with, Rules, TaskRules};
use crate::mcp::session::{self, IdentityDigest, RouteDigest};

fn keys() -> SessionKeys {
    let key: Vec<u8> = (0..32u8)
        .map(|i| i.wrapping_mul(11).wrapping_add(3))
        .collect();
    SessionKeys::new(vec![("k1".into(), key)]).unwrap()
}

fn caller(subject: &str) -> Digests {
    Digests {
        route: RouteDigest::of("r"),
        identity: IdentityDigest::of("https://idp", subject, Some("agent")),
    }
}

const NOW: u64 = 1_800_000_000;

fn task_for(subject: &str, literal: &str) -> String {
    seal_handle(&keys(), Handle::TaskId, literal, caller(subject), NOW).unwrap()
}

#[test]
fn a_task_id_opens_only_for_its_caller_and_is_no_other_handle() {
    let sealed = task_for("alice", "task-42");
    assert!(sealed.starts_with("tk1.k1."), "{sealed}");
    let open =
        |sealed: &str, b: Digests| open_handle(&keys(), Handle::TaskId, sealed, b, NOW, None);
    assert_eq!(open(&sealed, caller("alice")).as_deref(), Ok("task-42"));
    assert_eq!(
        open(&sealed, caller("bob")),
        Err(UnsealError::WrongIdentity)
    );
    let other_route = Digests {
        route: RouteDigest::of("r2"),
        ..caller("alice")
    };
    assert_eq!(open(&sealed, other_route), Err(UnsealError::WrongRoute));
    assert_eq!(
        open("task-42", caller("alice")),
        Err(UnsealError::Malformed)
    );
    // Domain separation: a sealed state or session id is not a task id, nor the other way.
    let state = seal_request_state(&keys(), "task-42", caller("alice"), NOW).unwrap();
    let session_id = session::seal(&keys(), "task-42", caller("alice"), NOW).unwrap();
    assert_eq!(open(&state, caller("alice")), Err(UnsealError::Malformed));
    assert_eq!(
        open(&session_id, caller("alice")),
        Err(UnsealError::Malformed)
    );
    assert_eq!(
        open_request_state(&keys(), &sealed, caller("alice"), NOW, None),
        Err(UnsealError::Malformed)
    );
    assert_eq!(
        session::open(&keys(), &sealed, caller("alice"), NOW, None),
        Err(UnsealError::Malformed)
    );
    let relabelled = format!("tk1{}", state.strip_prefix("rs1").unwrap());
    assert_eq!(
        open(&relabelled, caller("alice")),
        Err(UnsealError::Tampered)
    );
    // Older than the sessions' maximum age.
    let later = open_handle(
        &keys(),
        Handle::TaskId,
        &sealed,
        caller("alice"),
        NOW + 7200,
        Some(Duration::from_secs(3600)),
    );
    assert_eq!(later, Err(UnsealError::Expired));
    assert_eq!(Handle::TaskId.label(), "task_id");
}

#[test]
fn task_ids_are_presented_in_params_and_related_task_meta_of_one_message() {
    let one = |body: &str| inspect(body.as_bytes()).unwrap();
    let get = one(r#"{"jsonrpc":"2.0","id":1,"method":"tasks/get","params":{"taskId":"tk1.a"}}"#);
    assert_eq!(presented_handles(&get), Ok(vec![(Place::TaskId, "tk1.a")]));
    let related = one(
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","requestState":"rs1.s","_meta":{"io.modelcontextprotocol/related-task":{"taskId":"tk1.b"}}}}"#,
    );
    assert_eq!(
        presented_handles(&related),
        Ok(vec![
            (Place::RequestState, "rs1.s"),
            (Place::RelatedTask, "tk1.b")
        ])
    );
    // A notification may name a task (the client's own); a batch may not.
    let note =
        one(r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"taskId":"tk1.c"}}"#);
    assert_eq!(presented_handles(&note), Ok(vec![(Place::TaskId, "tk1.c")]));
    let batch = one(r#"[{"jsonrpc":"2.0","id":1,"method":"tasks/get","params":{"taskId":"t"}}]"#);
    assert!(presented_handles(&batch).is_err());
    let plain = one(r#"{"jsonrpc":"2.0","id":1,"method":"tasks/list"}"#);
    assert_eq!(presented_handles(&plain), Ok(vec![]));
}

#[test]
fn the_upstream_gets_its_own_task_ids_back_and_reads_the_same_message() {
    let sealed = task_for("alice", "task-\\u00e9-1");
    let related = task_for("alice", "t2");
    let escaped: String = sealed
        .chars()
        .map(|c| {
            if c == '.' {
                "\\u002e".to_string()
            } else {
                c.to_string()
            }
        })
        .collect();
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":"q","method":"tasks/get","params":{{"task\u0049d":"{escaped}","_meta":{{"io.modelcontextprotocol/related-task":{{"taskId":"{related}"}},"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}}}}"#
    );
    let inspected = inspect(body.as_bytes()).unwrap();
    let opened: Vec<(Place, String)> = presented_handles(&inspected)
        .unwrap()
        .into_iter()
        .map(|(place, s)| {
            let literal = open_handle(&keys(), place.handle(), s, caller("alice"), NOW, None);
            (place, literal.unwrap())
        })
        .collect();
    let (restored, again) = restore_handles(body.as_bytes(), &inspected, &opened).unwrap();
    assert_eq!(restored.len(), body.len());
    let value: serde_json::Value = serde_json::from_slice(&restored).unwrap();
    assert_eq!(value["params"]["taskId"], "task-\u{e9}-1");
    assert_eq!(
        value["params"]["_meta"]["io.modelcontextprotocol/related-task"]["taskId"],
        "t2"
    );
    assert_eq!(
        value["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"],
        "2026-07-28"
    );
    assert_eq!(again.messages[0].task_id.as_deref(), Some("task-\u{e9}-1"));
    assert_eq!(again.messages[0].related_task.as_deref(), Some("t2"));
    assert_eq!(again.messages[0].id, inspected.messages[0].id);
    // Restoring only some of the presented handles, or others, is refused.
    assert!(restore_handles(body.as_bytes(), &inspected, &opened[..1]).is_err());
    let wrong = vec![(Place::RequestState, "x".to_string()), opened[1].clone()];
    assert!(restore_handles(body.as_bytes(), &inspected, &wrong).is_err());
}

fn seal_task(literal: &str) -> Option<String> {
    Some(format!("TK[{literal}]"))
}

fn rules<'a>(per_caller: bool, presented: &'a [String]) -> Rules<'a> {
    Rules {
        keep: None,
        seal_state: None,
        tasks: Some(TaskRules {
            seal: &seal_task,
            per_caller,
            presented,
        }),
        pinned: None,
    }
}

fn filtered(text: &str, rules: Rules<'_>) -> Option<String> {
    let out = filter_message_with(text, rules).unwrap();
    if out.dropped {
        return None;
    }
    Some(out.rewritten.unwrap_or_else(|| text.to_string()))
}

#[test]
fn task_ids_in_results_are_sealed_for_the_caller() {
    let shared = rules(false, &[]);
    for (text, want) in [
        // A task-augmented call (2025-11-25 CreateTaskResult).
        (
            r#"{"jsonrpc":"2.0","id":1,"result":{"task":{"taskId":"a1","status":"working"}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{"task":{"taskId":"TK[a1]","status":"working"}}}"#,
        ),
        // tasks/get, tasks/cancel (the task's fields in the result), with related-task.
        (
            r#"{"jsonrpc":"2.0","id":2,"result":{"taskId":"a\u0031","status":"completed","_meta":{"io.modelcontextprotocol/related-task":{"taskId":"a1"}}}}"#,
            r#"{"jsonrpc":"2.0","id":2,"result":{"taskId":"TK[a\u0031]","status":"completed","_meta":{"io.modelcontextprotocol/related-task":{"taskId":"TK[a1]"}}}}"#,
        ),
        // Not where the extension puts one: the tool's own data is left alone.
        (
            r#"{"jsonrpc":"2.0","id":3,"result":{"content":[{"type":"text","text":"x"}],"structuredContent":{"taskId":"mine"}}}"#,
            r#"{"jsonrpc":"2.0","id":3,"result":{"content":[{"type":"text","text":"x"}],"structuredContent":{"taskId":"mine"}}}"#,
        ),
    ] {
        assert_eq!(filtered(text, shared).as_deref(), Some(want), "{text}");
    }
    for unreadable in [
        r#"{"jsonrpc":"2.0","id":1,"result":{"taskId":7}}"#,
        r#"{"jsonrpc":"2.0","id":1,"result":{"taskId":"a","task\u0049d":"b"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"result":{"task":{"taskId":"a","taskId":"b"}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"result":{"tasks":{}}}"#,
    ] {
        assert!(
            filter_message_with(unreadable, shared).is_err(),
            "{unreadable}"
        );
    }
    let refuse = |_: &str| None;
    let failing = Rules {
        tasks: Some(TaskRules {
            seal: &refuse,
            per_caller: false,
            presented: &[],
        }),
        pinned: None,
        ..shared
    };
    assert!(filter_message_with(r#"{"result":{"taskId":"a"}}"#, failing).is_err());
}

#[test]
fn a_task_list_shows_only_what_the_gateway_can_attribute() {
    let list = r#"{"jsonrpc":"2.0","id":4,"result":{"tasks":[{"taskId":"alice-1","status":"working"},{"taskId":"bob-1","status":"completed"},{"status":"no id"}],"nextCursor":"c"}}"#;
    // One credential for every caller: the upstream may list anyone's tasks.
    assert_eq!(
        filtered(list, rules(false, &[])).as_deref(),
        Some(r#"{"jsonrpc":"2.0","id":4,"result":{"tasks":[],"nextCursor":"c"}}"#)
    );
    let presented = ["alice-1".to_string()];
    assert_eq!(
        filtered(list, rules(false, &presented)).as_deref(),
        Some(
            r#"{"jsonrpc":"2.0","id":4,"result":{"tasks":[{"taskId":"TK[alice-1]","status":"working"}],"nextCursor":"c"}}"#
        )
    );
    // Judged for this caller: private to them, whatever the upstream said.
    let public =
        r#"{"jsonrpc":"2.0","id":4,"result":{"cacheScope":"public","ttlMs":5,"tasks":[]}}"#;
    assert_eq!(
        filtered(public, rules(true, &[])).as_deref(),
        Some(r#"{"jsonrpc":"2.0","id":4,"result":{"cacheScope":"private","ttlMs":5,"tasks":[]}}"#)
    );
    // Token exchange: the upstream sees the caller, every task it lists is theirs.
    assert_eq!(
        filtered(list, rules(true, &[])).as_deref(),
        Some(
            r#"{"jsonrpc":"2.0","id":4,"result":{"tasks":[{"taskId":"TK[alice-1]","status":"working"},{"taskId":"TK[bob-1]","status":"completed"}],"nextCursor":"c"}}"#
        )
    );
}

#[test]
fn task_notifications_pass_sealed_only_when_attributable() {
    let status = r#"{"jsonrpc":"2.0","method":"notifications/tasks/status","params":{"taskId":"bob-1","status":"completed"}}"#;
    assert_eq!(filtered(status, rules(false, &[])), None);
    let bob = ["bob-1".to_string()];
    assert_eq!(
        filtered(status, rules(false, &bob)).as_deref(),
        Some(
            r#"{"jsonrpc":"2.0","method":"notifications/tasks/status","params":{"taskId":"TK[bob-1]","status":"completed"}}"#
        )
    );
    assert!(filtered(status, rules(true, &[])).is_some_and(|t| t.contains("TK[bob-1]")));
    // A server request about a task (related-task `_meta`), on a shared stream.
    let ask = r#"{"jsonrpc":"2.0","id":9,"method":"elicitation/create","params":{"message":"?","_meta":{"io.modelcontextprotocol/related-task":{"taskId":"alice-1"}}}}"#;
    assert_eq!(filtered(ask, rules(false, &[])), None);
    assert!(filtered(ask, rules(true, &[])).is_some_and(|t| t.contains("TK[alice-1]")));
    // In a batch, only the unattributable message goes.
    let batch = format!(
        r#"[{status},{{"jsonrpc":"2.0","method":"notifications/progress","params":{{"progress":1}}}}]"#
    );
    assert_eq!(
        filtered(&batch, rules(false, &[])).as_deref(),
        Some(r#"[{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}}]"#)
    );
    // A task id of another type is not passed on.
    let bad = r#"{"jsonrpc":"2.0","method":"notifications/tasks/status","params":{"taskId":1}}"#;
    assert!(filter_message_with(bad, rules(true, &[])).is_err());
}

#[test]
fn answers_that_may_carry_a_task_id_are_read() {
    let one = |body: &str| inspect(body.as_bytes()).unwrap();
    let get = one(r#"{"jsonrpc":"2.0","id":1,"method":"tasks/list"}"#);
    let call = one(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#);
    let ping = one(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#);
    assert!(answer_may_carry_handle(Some(b"2025-11-25"), Some(&get)));
    assert!(answer_may_carry_handle(Some(b"2025-11-25"), Some(&call)));
    assert!(answer_may_carry_handle(Some(b"2026-07-28"), Some(&call)));
    assert!(!answer_may_carry_handle(Some(b"2025-06-18"), Some(&get)));
    assert!(!answer_may_carry_handle(None, Some(&get)));
    assert!(!answer_may_carry_handle(Some(b"2026-07-28"), Some(&ping)));
    assert!(may_carry_task_id(r#"{"params":{"taskId":"a"}}"#));
    assert!(may_carry_task_id(r#"{"params":{"task\u0049d":"a"}}"#));
    assert!(!may_carry_task_id(r#"{"params":{"progress":1}}"#));
}

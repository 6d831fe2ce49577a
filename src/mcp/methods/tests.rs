//! The table against inspection and list filtering, and against the MCP
//! specification's method lists. The policy's agreement with it is tested in
//! `policy/tests.rs`, the metric labels' in `telemetry/metrics.rs` (so that `mcp` stays
//! free of both).

use super::*;
use crate::mcp::jsonrpc::{inspect, Malformed, MessageKind};

const KINDS: [ListKind; 4] = [
    ListKind::Tools,
    ListKind::Prompts,
    ListKind::Resources,
    ListKind::ResourceTemplates,
];

/// The one message of a request of `method` whose `params` has both a `name` and a
/// `uri`, read by the fast path (`escaped: false`) or the serde reading (`true`: an
/// escape sends the body there; the values decode to the same `n` and `u`).
pub(crate) fn call(method: &str, escaped: bool) -> MessageKind {
    let (name, uri) = if escaped {
        (r"\u006e", r"\u0075")
    } else {
        ("n", "u")
    };
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{{"name":"{name}","uri":"{uri}"}}}}"#
    );
    match inspect(body.as_bytes()) {
        Ok(mut inspected) => inspected.messages.remove(0).kind,
        Err(e) => panic!("{method}: {e:?}"),
    }
}

#[test]
fn every_row_is_found_by_its_name() {
    for (i, row) in METHODS.iter().enumerate() {
        assert_eq!(position(row.name), Some(i), "{}", row.name);
        assert_eq!(lookup(row.name), Some(row));
    }
    for name in [
        "",
        "other",
        "Tools/call",
        "tools/call ",
        "notifications/message",
    ] {
        assert_eq!(lookup(name), None, "{name}");
    }
}

#[test]
fn inspection_extracts_the_target_of_every_row_and_only_those() {
    for row in METHODS {
        let expected = row.target().map(|t| match t.member() {
            "name" => "n".to_string(),
            "uri" => "u".to_string(),
            other => panic!("{}: no test value for member {other}", row.name),
        });
        for escaped in [false, true] {
            assert_eq!(
                call(row.name, escaped),
                MessageKind::Call {
                    method: row.name.to_string(),
                    target: expected.clone()
                },
                "{} (escaped: {escaped})",
                row.name
            );
        }
        if let Some(target) = row.target() {
            assert!(
                crate::mcp::jsonrpc::PARAMS_KEYS.contains(&target.member()),
                "{}: its key spellings are not checked",
                row.name
            );
            let without = format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"{}","params":{{}}}}"#,
                row.name
            );
            assert!(
                matches!(
                    inspect(without.as_bytes()),
                    Err(Malformed::InvalidParams(_))
                ),
                "{}",
                row.name
            );
        }
    }
    assert_eq!(
        call("made/up", false),
        MessageKind::Call {
            method: "made/up".to_string(),
            target: None
        }
    );
}

#[test]
fn every_list_method_maps_to_its_kind_and_back() {
    for kind in KINDS {
        let rows: Vec<_> = METHODS.iter().filter(|m| m.list == Some(kind)).collect();
        assert_eq!(rows, [list_method(kind)], "{kind:?}");
        assert_eq!(ListKind::of(kind.method()), Some(kind));
        assert_eq!(list_method(kind).governed, Governed::Route, "{kind:?}");
        assert_eq!(list_method(kind).kind, Kind::Request, "{kind:?}");
        // Listing and calling agree: an item is shown by the rule of the call it stands for.
        let target = item_method(kind).and_then(Method::target);
        let expected = match kind {
            ListKind::Tools => Some(Target::Tool),
            ListKind::Prompts => Some(Target::Prompt),
            ListKind::Resources => Some(Target::Resource),
            ListKind::ResourceTemplates => None,
        };
        assert_eq!(target, expected, "{kind:?}");
    }
    for row in METHODS {
        assert_eq!(ListKind::of(row.name), row.list, "{}", row.name);
    }
}

/// Client-to-server requests and notifications of each MCP revision, from the
/// specification's schema (`ClientRequest`, `ClientNotification`).
const REVISIONS: &[(&str, &[&str], &[&str])] = &[
    (
        "2025-06-18",
        &[
            "initialize",
            "ping",
            "resources/list",
            "resources/templates/list",
            "resources/read",
            "resources/subscribe",
            "resources/unsubscribe",
            "prompts/list",
            "prompts/get",
            "tools/list",
            "tools/call",
            "logging/setLevel",
            "completion/complete",
        ],
        &[
            "notifications/cancelled",
            "notifications/progress",
            "notifications/initialized",
            "notifications/roots/list_changed",
        ],
    ),
    (
        // Adds tasks (experimental, in the core schema).
        "2025-11-25",
        &[
            "initialize",
            "ping",
            "resources/list",
            "resources/templates/list",
            "resources/read",
            "resources/subscribe",
            "resources/unsubscribe",
            "prompts/list",
            "prompts/get",
            "tools/list",
            "tools/call",
            "tasks/get",
            "tasks/result",
            "tasks/list",
            "tasks/cancel",
            "logging/setLevel",
            "completion/complete",
        ],
        &[
            "notifications/cancelled",
            "notifications/progress",
            "notifications/initialized",
            "notifications/roots/list_changed",
            "notifications/tasks/status",
        ],
    ),
    (
        // No handshake (`server/discover`), no logging level, no resource subscription
        // pair (`subscriptions/listen`); tasks moved to an extension.
        "2026-07-28",
        &[
            "server/discover",
            "subscriptions/listen",
            "resources/list",
            "resources/templates/list",
            "resources/read",
            "prompts/list",
            "prompts/get",
            "tools/list",
            "tools/call",
            "completion/complete",
        ],
        &["notifications/cancelled"],
    ),
    (
        // The tasks extension (`io.modelcontextprotocol/tasks`) for 2026-07-28: polling
        // by `tasks/get`, input by `tasks/update`; no `tasks/list` or `tasks/result`.
        "2026-07-28 tasks extension",
        &["tasks/get", "tasks/update", "tasks/cancel"],
        &[],
    ),
];

#[test]
fn the_table_is_the_client_methods_of_the_spec_revisions() {
    let mut named = std::collections::HashSet::new();
    for (revision, requests, notifications) in REVISIONS {
        for (names, kind) in [
            (requests, Kind::Request),
            (notifications, Kind::Notification),
        ] {
            for name in names.iter() {
                let row = lookup(name).unwrap_or_else(|| panic!("{revision}: {name} is missing"));
                assert_eq!(row.kind, kind, "{revision}: {name}");
                named.insert(*name);
            }
        }
    }
    for row in METHODS {
        assert!(named.contains(row.name), "{} is in no revision", row.name);
    }
}

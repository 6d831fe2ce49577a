use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

use super::*;
use crate::config::{load_str, Router};
use crate::policy::Operation;

/// One event as a subscriber saw it: target, level, and every recorded field.
#[derive(Debug)]
struct Seen {
    target: String,
    level: tracing::Level,
    fields: BTreeMap<String, String>,
}

impl Seen {
    fn names(&self) -> Vec<&str> {
        self.fields.keys().map(String::as_str).collect()
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
}

struct Capture(Arc<Mutex<Vec<Seen>>>);

impl<S: tracing::Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut fields = Fields(BTreeMap::new());
        event.record(&mut fields);
        let meta = event.metadata();
        self.0.lock().unwrap().push(Seen {
            target: meta.target().to_string(),
            level: *meta.level(),
            fields: fields.0,
        });
    }
}

/// The one event `event` writes.
fn emitted(event: AuditEvent<'_>) -> Seen {
    emitted_for(event, None)
}

/// The one event `event` writes for the request `ids` names.
fn emitted_for(event: AuditEvent<'_>, ids: Option<&RequestIds>) -> Seen {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let subscriber = tracing_subscriber::registry().with(Capture(seen.clone()));
    tracing::subscriber::with_default(subscriber, || write(&event, ids));
    let mut seen = std::mem::take(&mut *seen.lock().unwrap());
    assert_eq!(seen.len(), 1, "{seen:?}");
    let one = seen.remove(0);
    assert_eq!(one.target, "audit");
    one
}

fn route() -> Arc<Route> {
    let text = "listen: 127.0.0.1:1\nadmin: { listen: 127.0.0.1:2 }\nroutes:\n  - { name: tools, match: { path: /mcp }, upstream: { url: 'http://127.0.0.1:3001/' } }\n";
    let config = load_str("t", text).unwrap().config;
    Router::new(&config.routes)
        .find(None, "/mcp")
        .unwrap()
        .route
}

fn alice() -> Principal {
    Principal::new(
        "https://idp.example".to_string(),
        "alice".to_string(),
        Some("agent".to_string()),
        vec!["mcp".to_string()],
        0,
    )
}

#[test]
fn every_kind_of_event_names_its_request_and_trace() {
    let route = route();
    let alice = alice();
    let mut headers = http::HeaderMap::new();
    headers.insert("x-request-id", "req-1".parse().unwrap());
    headers.insert(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .unwrap(),
    );
    let ids = crate::telemetry::ids::assign(&headers);
    let verdict = Verdict {
        op: Operation::Tool("deploy"),
        decision: Decision::Allow { scopes: vec![] },
    };
    let caller = Caller::of(Some(&alice));
    let error = crate::mcp::filter::NOT_JSON;
    for event in [
        AuditEvent::AuthenticationRefused {
            route: &route,
            failure: &AuthFailure::InsufficientScope,
            client: None,
        },
        AuditEvent::Authorization {
            route: &route,
            caller,
            verdict: &verdict,
        },
        AuditEvent::SessionRejected {
            route: &route,
            caller,
            reason: UnsealError::Tampered,
        },
        AuditEvent::StreamEnded {
            route: &route,
            failure: StreamFailure::Unfilterable,
        },
        AuditEvent::ListFilterFailed {
            route: &route,
            error: &error,
        },
    ] {
        let seen = emitted_for(event, Some(&ids));
        assert_eq!(seen.get("request_id"), Some("req-1"), "{seen:?}");
        assert_eq!(
            seen.get("trace_id"),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
    }
}

#[test]
fn authentication_refused_names_the_route_and_reason() {
    let route = route();
    let seen = emitted(AuditEvent::AuthenticationRefused {
        route: &route,
        failure: &AuthFailure::InsufficientScope,
        client: None,
    });
    assert_eq!(seen.level, tracing::Level::INFO);
    assert_eq!(seen.names(), ["event", "reason", "route"]);
    assert_eq!(seen.get("event"), Some("authentication_refused"));
    assert_eq!(seen.get("route"), Some("tools"));
    assert_eq!(seen.get("reason"), Some("insufficient_scope"));
}

#[test]
fn an_authorization_names_the_caller_operation_and_missing_scopes() {
    let route = route();
    let alice = alice();
    let verdict = Verdict {
        op: Operation::Tool("deploy"),
        decision: Decision::MissingScopes {
            needed: vec!["ops".into(), "write".into()],
            missing: vec!["ops".into(), "write".into()],
        },
    };
    let seen = emitted(AuditEvent::Authorization {
        route: &route,
        caller: Caller::of(Some(&alice)),
        verdict: &verdict,
    });
    assert_eq!(seen.level, tracing::Level::INFO);
    assert_eq!(
        seen.names(),
        [
            "client", "decision", "event", "issuer", "method", "missing", "name", "route", "rule",
            "subject"
        ]
    );
    assert_eq!(seen.get("rule"), Some("scopes"));
    assert_eq!(seen.get("event"), Some("authorization"));
    assert_eq!(seen.get("issuer"), Some("https://idp.example"));
    assert_eq!(seen.get("subject"), Some("alice"));
    assert_eq!(seen.get("client"), Some("agent"));
    assert_eq!(seen.get("method"), Some("tools/call"));
    assert_eq!(seen.get("name"), Some("deploy"));
    assert_eq!(seen.get("decision"), Some(verdict.decision.label()));
    assert_eq!(seen.get("missing"), Some("ops write"));

    // An allowed operation has an empty `missing`; a method without a target no `name`.
    let allowed = Verdict {
        op: Operation::Method("ping"),
        decision: Decision::Allow { scopes: Vec::new() },
    };
    let seen = emitted(AuditEvent::Authorization {
        route: &route,
        caller: Caller::of(Some(&alice)),
        verdict: &allowed,
    });
    assert_eq!(seen.get("decision"), Some("allow"));
    assert_eq!(seen.get("missing"), Some(""));
    assert_eq!(seen.get("name"), None);
    assert_eq!(seen.get("rule"), None);

    // A failed claim rule is named (the claim, never its values).
    let claims = Verdict {
        op: Operation::Tool("deploy"),
        decision: Decision::ClaimsFailed {
            rule: "claims:groups".into(),
        },
    };
    let seen = emitted(AuditEvent::Authorization {
        route: &route,
        caller: Caller::of(Some(&alice)),
        verdict: &claims,
    });
    assert_eq!(seen.get("decision"), Some("deny"));
    assert_eq!(seen.get("rule"), Some("claims:groups"));
    assert_eq!(seen.get("missing"), Some(""));
}

#[test]
fn an_anonymous_caller_has_no_identity_fields() {
    let route = route();
    let seen = emitted(AuditEvent::AuthorizationSummary {
        route: &route,
        caller: Caller::of(None),
        operations: 3,
        allowed: 1,
        denied: 2,
        denied_not_logged: 0,
    });
    assert_eq!(seen.level, tracing::Level::INFO);
    assert_eq!(
        seen.names(),
        [
            "allowed",
            "denied",
            "denied_not_logged",
            "event",
            "operations",
            "route"
        ]
    );
    assert_eq!(seen.get("event"), Some("authorization"));
    assert_eq!(seen.get("operations"), Some("3"));
    assert_eq!(seen.get("denied"), Some("2"));
}

#[test]
fn a_rejected_session_names_the_presenting_caller() {
    let route = route();
    let alice = alice();
    let seen = emitted(AuditEvent::SessionRejected {
        route: &route,
        caller: Caller::of(Some(&alice)),
        reason: UnsealError::Malformed,
    });
    assert_eq!(seen.level, tracing::Level::WARN);
    assert_eq!(
        seen.names(),
        ["client", "event", "issuer", "note", "reason", "route", "subject"]
    );
    assert_eq!(seen.get("event"), Some("session_rejected"));
    assert_eq!(seen.get("reason"), Some(UnsealError::Malformed.reason()));
    assert_eq!(seen.get("subject"), Some("alice"));
}

#[test]
fn a_rejected_handle_names_the_handle_and_the_presenting_caller() {
    let route = route();
    let alice = alice();
    let seen = emitted(AuditEvent::HandleRejected {
        route: &route,
        caller: Caller::of(Some(&alice)),
        handle: Handle::RequestState,
        reason: UnsealError::WrongIdentity,
    });
    assert_eq!(seen.level, tracing::Level::WARN);
    assert_eq!(
        seen.names(),
        ["client", "event", "handle", "issuer", "note", "reason", "route", "subject"]
    );
    assert_eq!(seen.get("event"), Some("handle_rejected"));
    assert_eq!(seen.get("handle"), Some("request_state"));
    assert_eq!(seen.get("reason"), Some("wrong_identity"));
    assert_eq!(seen.get("subject"), Some("alice"));
}

#[test]
fn a_failed_credential_names_the_error_kind() {
    let route = route();
    let alice = alice();
    let error = ExchangeError::Rejected {
        status: 400,
        error: Some("invalid_grant".to_string()),
    };
    let seen = emitted(AuditEvent::UpstreamCredentialFailed {
        route: &route,
        caller: Caller::of(Some(&alice)),
        error: &error,
    });
    assert_eq!(seen.level, tracing::Level::WARN);
    assert_eq!(
        seen.names(),
        ["client", "error", "event", "issuer", "route", "subject"]
    );
    assert_eq!(seen.get("event"), Some("upstream_credential_failed"));
    assert_eq!(seen.get("error"), Some(error.to_string().as_str()));
}

#[test]
fn unfilterable_answers_and_streams_say_so() {
    let route = route();
    let seen = emitted(AuditEvent::StreamEnded {
        route: &route,
        failure: StreamFailure::Unfilterable,
    });
    assert_eq!(seen.level, tracing::Level::WARN);
    assert_eq!(seen.names(), ["event", "message", "reason", "route"]);
    assert_eq!(seen.get("event"), Some("stream_ended"));
    assert_eq!(seen.get("reason"), Some("unfilterable_message"));

    let error = crate::mcp::filter::NOT_JSON;
    let seen = emitted(AuditEvent::ListFilterFailed {
        route: &route,
        error: &error,
    });
    assert_eq!(seen.level, tracing::Level::WARN);
    assert_eq!(seen.names(), ["event", "message", "reason", "route"]);
    assert_eq!(seen.get("event"), Some("list_filter_failed"));
    assert_eq!(seen.get("reason"), Some("the answer is not JSON"));
}

#[test]
fn a_rate_limited_request_names_the_limit_and_key_kind_and_is_budgeted_by_source() {
    let route = route();
    let alice = alice();
    let seen = emitted(AuditEvent::RateLimited {
        route: &route,
        caller: Caller::of(Some(&alice)),
        limit: "deploy",
        key: crate::ratelimit::KeyKind::Subject,
        retry_after: Some(12),
        client: None,
    });
    assert_eq!(seen.level, tracing::Level::INFO);
    assert_eq!(
        seen.names(),
        [
            "client",
            "event",
            "issuer",
            "key",
            "limit",
            "retry_after",
            "route",
            "subject"
        ]
    );
    assert_eq!(seen.get("event"), Some("rate_limited"));
    assert_eq!(seen.get("limit"), Some("deploy"));
    assert_eq!(seen.get("key"), Some("subject"));
    assert_eq!(seen.get("retry_after"), Some("12"));
    // A refusal for the log budget: by subject, else by the client's address.
    let anonymous = AuditEvent::RateLimited {
        route: &route,
        caller: Caller::of(None),
        limit: "route",
        key: crate::ratelimit::KeyKind::Client,
        retry_after: None,
        client: Some("192.0.2.9".parse().unwrap()),
    };
    let key = anonymous.refusal_key().unwrap();
    assert_eq!((key.event, key.reason.as_ref()), ("rate_limited", "client"));
    assert_eq!(
        key.source,
        crate::telemetry::budget::Source::Client("192.0.2.9".parse().unwrap())
    );
    let seen = emitted(anonymous);
    assert_eq!(seen.names(), ["event", "key", "limit", "route"]);
}

#[test]
fn a_changed_tool_definition_names_the_pinned_tool_and_the_action() {
    let route = route();
    let alice = alice();
    let seen = emitted(AuditEvent::ToolDefinitionChanged {
        route: &route,
        caller: Caller::of(Some(&alice)),
        tool: "read_file",
        reason: "changed",
        action: "hidden",
    });
    assert_eq!(seen.level, tracing::Level::WARN);
    assert_eq!(
        seen.names(),
        ["action", "client", "event", "issuer", "message", "reason", "route", "subject", "tool"]
    );
    assert_eq!(seen.get("event"), Some("tool_definition_changed"));
    assert_eq!(seen.get("tool"), Some("read_file"));
    assert_eq!(seen.get("reason"), Some("changed"));
    assert_eq!(seen.get("action"), Some("hidden"));
    assert_eq!(seen.get("subject"), Some("alice"));
}

/// A shadow would-be denial is written like a denial, with `shadow: true`, and is kept
/// to the log budget under its own reason (a flood of calls that break a shadowed rule
/// cannot write a line each, nor hide real denials of the same caller).
#[test]
fn a_shadow_decision_is_written_and_budgeted_apart_from_denials() {
    let route = route();
    let alice = alice();
    let shadowed = crate::policy::Shadowed {
        rule: "tools:read_file:arguments:/path".to_string(),
        decision: crate::policy::Decision::ArgumentsFailed {
            rule: "arguments:/path".to_string(),
            reason: "does not match the allowed pattern",
        },
    };
    let event = AuditEvent::ShadowDecision {
        route: &route,
        caller: Caller::of(Some(&alice)),
        op: Operation::Tool("read_file"),
        shadowed: &shadowed,
    };
    let key = event.refusal_key().unwrap();
    assert_eq!(
        (key.event, key.reason.as_ref()),
        ("authorization", "shadow:tools:read_file:arguments:/path")
    );
    assert_eq!(
        key.source,
        crate::telemetry::budget::Source::Subject("alice".to_string())
    );
    let seen = emitted(event);
    assert_eq!(seen.get("shadow"), Some("true"));
    assert_eq!(seen.get("rule"), Some("tools:read_file:arguments:/path"));
    assert_eq!(seen.get("failed"), Some("arguments:/path"));
    assert_eq!(seen.get("decision"), Some("deny"));
}

/// Denials are budgeted per deciding rule: a caller refused by a claim rule and by an
/// argument rule in one interval gets a line for each, not one line and a count.
#[test]
fn denials_by_different_rules_are_different_budget_keys() {
    let route = route();
    let alice = alice();
    let key = |decision: Decision| {
        let verdict = Verdict {
            op: Operation::Tool("deploy"),
            decision,
        };
        AuditEvent::Authorization {
            route: &route,
            caller: Caller::of(Some(&alice)),
            verdict: &verdict,
        }
        .refusal_key()
        .map(|k| k.reason.into_owned())
    };
    let claims = key(Decision::ClaimsFailed {
        rule: "claims:groups".to_string(),
    });
    let arguments = key(Decision::ArgumentsFailed {
        rule: "arguments:/path".to_string(),
        reason: "is required",
    });
    assert_eq!(claims.as_deref(), Some("deny:claims:groups"));
    assert_eq!(arguments.as_deref(), Some("deny:arguments:/path"));
    assert_eq!(key(Decision::NotPermitted).as_deref(), Some("deny:default"));
    assert_eq!(
        key(Decision::Allow { scopes: Vec::new() }),
        None,
        "an allow is the audit trail: always written"
    );
}

use super::*;
use crate::mcp::jsonrpc::inspect;

fn rules(pairs: &[(&str, &[&str])]) -> RuleSet {
    let (set, ambiguous) = RuleSet::new(
        pairs
            .iter()
            .map(|(p, s)| Rule {
                glob: Glob::new(p),
                scopes: s.iter().map(|x| x.to_string()).collect(),
            })
            .collect(),
    );
    assert!(ambiguous.is_empty(), "{ambiguous:?}");
    set
}

fn policy(default_allow: bool) -> Policy {
    Policy {
        default_allow,
        tools: rules(&[
            ("echo", &["tools:echo"]),
            ("get-*", &["tools:read"]),
            ("get-secret", &["tools:read", "secrets"]),
            ("delete_repo", &["repo:admin"]),
        ]),
        resources: rules(&[("test://static/resource/*", &["resources:read"])]),
        prompts: rules(&[("simple-prompt", &["prompts:read"])]),
        methods: rules(&[("tasks/*", &["tasks"])]),
    }
}

fn granted(s: &[&str]) -> Vec<String> {
    s.iter().map(|x| x.to_string()).collect()
}

#[test]
fn allow_deny_matrix() {
    let p = policy(false);
    let cases: &[(Operation, &[&str], &str)] = &[
        (Operation::Tool("echo"), &["tools:echo"], "allow"),
        (Operation::Tool("echo"), &[], "deny"),
        (Operation::Tool("Echo"), &["tools:echo"], "deny"),
        (Operation::Tool("get-env"), &["tools:read"], "allow"),
        (Operation::Tool("get-secret"), &["tools:read"], "deny"),
        (
            Operation::Tool("get-secret"),
            &["tools:read", "secrets"],
            "allow",
        ),
        (
            Operation::Tool("unlisted"),
            &["tools:echo", "tools:read", "repo:admin"],
            "deny",
        ),
        (
            Operation::Resource {
                method: "resources/read",
                uri: "test://static/resource/1",
            },
            &["resources:read"],
            "allow",
        ),
        (
            Operation::Resource {
                method: "resources/read",
                uri: "test://other/1",
            },
            &["resources:read"],
            "deny",
        ),
        (
            Operation::Prompt("simple-prompt"),
            &["prompts:read"],
            "allow",
        ),
        (
            Operation::Prompt("complex-prompt"),
            &["prompts:read"],
            "deny",
        ),
        (Operation::Method("initialize"), &[], "allow"),
        (Operation::Method("server/discover"), &[], "allow"),
        (Operation::Method("subscriptions/listen"), &[], "allow"),
        (Operation::Method("tools/list"), &[], "allow"),
        (Operation::Method("notifications/initialized"), &[], "allow"),
        (Operation::Method("tasks/get"), &[], "deny"),
        (Operation::Method("tasks/get"), &["tasks"], "allow"),
        (Operation::Method("sampling/unknown"), &["tasks"], "deny"),
        (Operation::Response, &[], "allow"),
    ];
    for (op, g, want) in cases {
        assert_eq!(
            p.decide(&granted(g), *op).label(),
            *want,
            "{op:?} with {g:?}"
        );
    }
}

#[test]
fn default_allow_covers_unlisted_names_only() {
    let p = policy(true);
    assert_eq!(p.decide(&[], Operation::Tool("unlisted")).label(), "allow");
    assert_eq!(
        p.decide(&[], Operation::Method("custom/method")).label(),
        "allow"
    );
    assert_eq!(
        p.decide(&[], Operation::Tool("echo")).label(),
        "deny",
        "listed rules still apply"
    );
}

#[test]
fn missing_and_needed_scopes_are_reported() {
    let p = policy(false);
    assert_eq!(
        p.decide(&granted(&["tools:read"]), Operation::Tool("get-secret")),
        Decision::MissingScopes {
            needed: granted(&["tools:read", "secrets"]),
            missing: granted(&["secrets"])
        }
    );
    assert_eq!(
        p.decide(&[], Operation::Tool("nope")),
        Decision::NotPermitted
    );
}

#[test]
fn ambiguous_patterns_are_reported() {
    let (_, ambiguous) = RuleSet::new(vec![
        Rule {
            glob: Glob::new("get-*"),
            scopes: vec![],
        },
        Rule {
            glob: Glob::new("*-env"),
            scopes: vec![],
        },
        Rule {
            glob: Glob::new("get-env"),
            scopes: vec![],
        },
    ]);
    assert_eq!(ambiguous, vec![("get-*".to_string(), "*-env".to_string())]);
}

#[test]
fn a_batch_is_refused_whole_and_permits_carry_rule_scopes() {
    let p = policy(false);
    let ok = inspect(br#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"get-env"}}]"#).unwrap();
    let (permit, verdicts) =
        authorize(Some(&p), &granted(&["tools:echo", "tools:read"]), Some(&ok));
    assert_eq!(
        permit.unwrap().scopes,
        granted(&["tools:echo", "tools:read"])
    );
    assert_eq!(verdicts.len(), 2);

    let hidden = inspect(br#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_repo"}}]"#).unwrap();
    let (denied, verdicts) = authorize(Some(&p), &granted(&["tools:echo"]), Some(&hidden));
    let denial = denied.unwrap_err();
    assert_eq!(denial.missing, granted(&["repo:admin"]));
    assert_eq!(denial.needed, granted(&["tools:echo", "repo:admin"]));
    assert!(denial
        .message
        .contains("tool `delete_repo` needs scope repo:admin"));
    assert_eq!(verdicts[0].decision.label(), "allow");
    assert_eq!(verdicts[1].decision.label(), "deny");
}

#[test]
fn no_policy_permits_everything_and_no_body_permits() {
    let any = inspect(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#)
        .unwrap();
    assert!(authorize(None, &[], Some(&any)).0.is_ok());
    assert!(authorize(Some(&policy(false)), &[], None).0.is_ok());
}

#[test]
fn tool_labels_are_bounded() {
    let p = policy(false);
    assert_eq!(p.tool_label("echo"), "echo");
    assert_eq!(p.tool_label("get-anything"), "get-*");
    assert_eq!(p.tool_label("random-name-123"), "other");
}

#[test]
fn listing_agrees_with_calling_and_templates_follow_resource_rules() {
    let grants = [
        granted(&[]),
        granted(&["tools:echo", "resources:read"]),
        granted(&["tools:read"]),
        granted(&["tools:read", "secrets", "prompts:read"]),
    ];
    for default_allow in [false, true] {
        let p = policy(default_allow);
        for g in &grants {
            for name in ["echo", "get-env", "get-secret", "delete_repo", "unlisted"] {
                for op in [
                    Operation::Tool(name),
                    Operation::Prompt(name),
                    Operation::Resource {
                        method: "resources/read",
                        uri: name,
                    },
                ] {
                    assert_eq!(
                        p.visible(g, op),
                        p.decide(g, op).label() == "allow",
                        "{op:?} {g:?}"
                    );
                }
            }
        }
    }
    let p = policy(false);
    let g = granted(&["tools:echo", "resources:read"]);
    assert!(p.template_visible(&g, "test://static/resource/{id}"));
    assert!(!p.template_visible(&g, "test://dynamic/{id}"));
    assert!(!p.template_visible(&granted(&[]), "test://static/resource/{id}"));
    assert!(policy(true).template_visible(&[], "test://dynamic/{id}"));
}

// The table of MCP methods (`mcp::methods`) as the policy reads it.

use crate::mcp::methods::{self, Governed, ListKind, Target, METHODS};

fn table_rules(pairs: &[(&str, &str)]) -> RuleSet {
    let (set, ambiguous) = RuleSet::new(
        pairs
            .iter()
            .map(|(glob, scope)| Rule {
                glob: Glob::new(glob),
                scopes: vec![scope.to_string()],
            })
            .collect(),
    );
    assert!(ambiguous.is_empty(), "{ambiguous:?}");
    set
}

/// A rule for the target `n` (tools, prompts) and `u` (resources), each with its own
/// scope; no `methods` rule.
fn table_policy(default_allow: bool) -> Policy {
    Policy {
        default_allow,
        tools: table_rules(&[("n", "tool")]),
        prompts: table_rules(&[("n", "prompt")]),
        resources: table_rules(&[("u", "resource")]),
        methods: RuleSet::default(),
    }
}

#[test]
fn every_method_of_the_table_is_judged_as_it_says() {
    let deny = table_policy(false);
    let allow = table_policy(true);
    for row in METHODS {
        let kind = methods::tests::call(row.name, false);
        let op = Operation::of(&kind);
        assert_eq!(op.method(), row.name);
        let needed = deny.required_scopes_for(op).map(<[String]>::to_vec);
        let scope = |s: &str| Some(vec![s.to_string()]);
        match row.governed {
            Governed::Target(Target::Tool) => {
                assert_eq!(op, Operation::Tool("n"));
                assert_eq!(needed, scope("tool"), "{}", row.name);
            }
            Governed::Target(Target::Prompt) => {
                assert_eq!(op, Operation::Prompt("n"));
                assert_eq!(needed, scope("prompt"), "{}", row.name);
            }
            Governed::Target(Target::Resource) => {
                assert_eq!(
                    op,
                    Operation::Resource {
                        method: row.name,
                        uri: "u"
                    }
                );
                assert_eq!(needed, scope("resource"), "{}", row.name);
            }
            Governed::Route => {
                assert_eq!(op, Operation::Method(row.name));
                assert!(route_level(row.name), "{}", row.name);
                assert_eq!(needed, Some(vec![]), "{}", row.name);
            }
            Governed::Default => {
                assert_eq!(op, Operation::Method(row.name));
                assert!(!route_level(row.name), "{}", row.name);
                assert_eq!(needed, None, "{}", row.name);
                assert_eq!(allow.required_scopes_for(op), Some(&[][..]), "{}", row.name);
            }
        }
        // A `methods` rule governs every method that has no target.
        let mut ruled = table_policy(false);
        ruled.methods = table_rules(&[(row.name, "ruled")]);
        let ruled_needed = ruled.required_scopes_for(op).map(<[String]>::to_vec);
        if row.target().is_none() {
            assert_eq!(ruled_needed, scope("ruled"), "{}", row.name);
        } else {
            assert_eq!(ruled_needed, needed, "{}", row.name);
        }
    }
    // Methods the table does not name: notifications are route-level, the rest default.
    assert!(route_level("notifications/made_up"));
    assert!(!route_level("made/up"));
    assert_eq!(methods::governed("made/up"), Governed::Default);
}

#[test]
fn list_items_are_judged_by_the_call_they_stand_for() {
    let p = table_policy(false);
    let held = |s: &str| vec![s.to_string()];
    for (kind, name, scope) in [
        (ListKind::Tools, "n", "tool"),
        (ListKind::Prompts, "n", "prompt"),
        (ListKind::Resources, "u", "resource"),
        (ListKind::ResourceTemplates, "u", "resource"),
    ] {
        assert!(p.item_visible(&held(scope), kind, name), "{kind:?}");
        assert!(!p.item_visible(&held("other"), kind, name), "{kind:?}");
    }
}

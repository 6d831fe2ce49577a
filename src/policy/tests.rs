use super::*;
use crate::mcp::jsonrpc::inspect;

fn rules(pairs: &[(&str, &[&str])]) -> RuleSet {
    let (set, ambiguous) = RuleSet::new(
        pairs
            .iter()
            .map(|(p, s)| Rule {
                glob: Glob::new(p),
                scopes: s.iter().map(|x| x.to_string()).collect(),
                claims: vec![],
            })
            .collect(),
    );
    assert!(ambiguous.is_empty(), "{ambiguous:?}");
    set
}

fn policy(default_allow: bool) -> Policy {
    Policy {
        default_allow,
        require: vec![],
        tools: rules(&[
            ("echo", &["tools:echo"]),
            ("get-*", &["tools:read"]),
            ("get-secret", &["tools:read", "secrets"]),
            ("delete_repo", &["repo:admin"]),
        ]),
        resources: rules(&[("test://static/resource/*", &["resources:read"])]),
        prompts: rules(&[("simple-prompt", &["prompts:read"])]),
        methods: rules(&[("tasks/*", &["tasks"])]),
        ..Policy::default()
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
            claims: vec![],
        },
        Rule {
            glob: Glob::new("*-env"),
            scopes: vec![],
            claims: vec![],
        },
        Rule {
            glob: Glob::new("get-env"),
            scopes: vec![],
            claims: vec![],
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
                claims: vec![],
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
        require: vec![],
        tools: table_rules(&[("n", "tool")]),
        prompts: table_rules(&[("n", "prompt")]),
        resources: table_rules(&[("u", "resource")]),
        methods: RuleSet::default(),
        ..Policy::default()
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

/// A caller with scopes and claims, as a principal presents them to policy.
struct Caller {
    scopes: Vec<String>,
    claims: ClaimSet,
}

impl Grants for Caller {
    fn scopes(&self) -> &[String] {
        &self.scopes
    }
    fn claims(&self) -> &ClaimSet {
        &self.claims
    }
}

fn claim_rule(claim: &str, values: &[&str]) -> ClaimRule {
    ClaimRule {
        claim: ClaimName::parse(claim).unwrap(),
        values: granted(values),
        shadow: false,
    }
}

fn caller(scopes: &[&str], claims: serde_json::Value) -> Caller {
    let names: Vec<ClaimName> = ["groups", "tid", "/realm_access/roles"]
        .iter()
        .map(|n| ClaimName::parse(n).unwrap())
        .collect();
    Caller {
        scopes: granted(scopes),
        claims: ClaimSet::collect(&names, &claims),
    }
}

/// `tools: { deploy: { scopes: [tools:deploy], claims: { groups: [sre, platform] } },
/// echo: [tools:echo] }`, with or without `require: { claims: { tid: [t1] } }`.
fn claims_policy(require: bool) -> Policy {
    let (tools, ambiguous) = RuleSet::new(vec![
        Rule {
            glob: Glob::new("deploy"),
            scopes: granted(&["tools:deploy"]),
            claims: vec![claim_rule("groups", &["sre", "platform"])],
        },
        Rule {
            glob: Glob::new("echo"),
            scopes: granted(&["tools:echo"]),
            claims: vec![],
        },
        Rule {
            glob: Glob::new("admin-*"),
            scopes: vec![],
            claims: vec![claim_rule("/realm_access/roles", &["admin"])],
        },
    ]);
    assert!(ambiguous.is_empty());
    let (resources, _) = RuleSet::new(vec![Rule {
        glob: Glob::new("file:///srv/secret/*"),
        scopes: vec![],
        claims: vec![claim_rule("groups", &["sre"])],
    }]);
    Policy {
        require: if require {
            vec![claim_rule("tid", &["t1"])]
        } else {
            vec![]
        },
        tools,
        resources,
        ..Policy::default()
    }
}

#[test]
fn claim_rules_decide_with_no_step_up() {
    let p = claims_policy(false);
    let sre = caller(
        &["tools:deploy"],
        serde_json::json!({"groups": ["dev", "sre"]}),
    );
    let dev = caller(
        &["tools:deploy", "tools:echo"],
        serde_json::json!({"groups": ["dev"]}),
    );
    assert_eq!(
        p.decide(&sre, Operation::Tool("deploy")),
        Decision::Allow {
            scopes: granted(&["tools:deploy"])
        }
    );
    let refused = p.decide(&dev, Operation::Tool("deploy"));
    assert_eq!(
        refused,
        Decision::ClaimsFailed {
            rule: "claims:groups".into()
        }
    );
    assert_eq!(refused.rule(), Some("claims:groups"));
    assert_eq!(refused.label(), "deny");
    // The claim fails first: more scopes would not help, so none are asked for.
    let neither = caller(&[], serde_json::json!({}));
    assert!(matches!(
        p.decide(&neither, Operation::Tool("deploy")),
        Decision::ClaimsFailed { .. }
    ));
    // With the claim, scopes are still required.
    let sre_without_scope = caller(&[], serde_json::json!({"groups": "sre"}));
    assert!(matches!(
        p.decide(&sre_without_scope, Operation::Tool("deploy")),
        Decision::MissingScopes { .. }
    ));
    // Claims-only rules and nested claims.
    let admin = caller(
        &[],
        serde_json::json!({"realm_access": {"roles": ["admin"]}}),
    );
    assert!(matches!(
        p.decide(&admin, Operation::Tool("admin-reset")),
        Decision::Allow { .. }
    ));
    assert!(matches!(
        p.decide(&sre, Operation::Tool("admin-reset")),
        Decision::ClaimsFailed { .. }
    ));
    // A bare scope list holds no claims.
    assert!(matches!(
        p.decide(&granted(&["tools:deploy"]), Operation::Tool("deploy")),
        Decision::ClaimsFailed { .. }
    ));

    let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"deploy"}}"#;
    let inspected = inspect(body).unwrap();
    let (result, verdicts) = authorize(Some(&p), &dev, Some(&inspected));
    let denial = result.unwrap_err();
    assert!(denial.not_permitted, "no step-up for a claim rule");
    assert!(denial.needed.is_empty());
    assert!(
        denial.message.contains("tool `deploy`") && denial.message.contains("claims:groups"),
        "{}",
        denial.message
    );
    assert!(
        !denial.message.contains("sre"),
        "accepted values are not told"
    );
    assert_eq!(verdicts[0].decision.rule(), Some("claims:groups"));
}

#[test]
fn claim_rules_filter_lists_like_calls() {
    let p = claims_policy(false);
    let sre = caller(
        &["tools:deploy", "tools:echo"],
        serde_json::json!({"groups": ["sre"]}),
    );
    let dev = caller(
        &["tools:deploy", "tools:echo"],
        serde_json::json!({"groups": ["dev"]}),
    );
    assert!(p.item_visible(&sre, ListKind::Tools, "deploy"));
    assert!(!p.item_visible(&dev, ListKind::Tools, "deploy"));
    assert!(p.item_visible(&dev, ListKind::Tools, "echo"));
    assert!(p.item_visible(&sre, ListKind::Resources, "file:///srv/secret/a"));
    assert!(!p.item_visible(&dev, ListKind::Resources, "file:///srv/secret/a"));
    // A template is shown only when a rule the caller satisfies can match its URIs.
    assert!(p.template_visible(&sre, "file:///srv/secret/{name}"));
    assert!(!p.template_visible(&dev, "file:///srv/secret/{name}"));
}

#[test]
fn the_route_requirement_refuses_every_request_and_hides_everything() {
    let p = claims_policy(true);
    let ours = caller(&["tools:echo"], serde_json::json!({"tid": "t1"}));
    let theirs = caller(&["tools:echo"], serde_json::json!({"tid": "t2"}));
    assert!(matches!(
        p.decide(&ours, Operation::Tool("echo")),
        Decision::Allow { .. }
    ));
    assert_eq!(
        p.decide(&theirs, Operation::Tool("echo")),
        Decision::ClaimsFailed {
            rule: "claims:tid".into()
        }
    );
    assert_eq!(
        p.decide(&theirs, Operation::Method("initialize")),
        Decision::ClaimsFailed {
            rule: "claims:tid".into()
        }
    );
    assert!(p.item_visible(&ours, ListKind::Tools, "echo"));
    assert!(!p.item_visible(&theirs, ListKind::Tools, "echo"));
    assert!(!p.template_visible(&theirs, "file:///srv/secret/{name}"));
    // A request without a message (GET stream, DELETE) is refused too, and recorded.
    let (result, verdicts) = authorize(Some(&p), &theirs, None);
    assert!(result.unwrap_err().not_permitted);
    assert_eq!(verdicts.len(), 1);
    assert_eq!(verdicts[0].op, Operation::Request);
    assert_eq!(verdicts[0].decision.rule(), Some("claims:tid"));
    let (result, verdicts) = authorize(Some(&p), &ours, None);
    assert!(result.is_ok());
    assert!(verdicts.is_empty());
}

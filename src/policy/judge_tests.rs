use super::*;
use crate::mcp::arguments::CallArguments;
use crate::mcp::jsonrpc::inspect;
use crate::mcp::methods::ListKind;
use crate::policy::arguments::{ArgumentName, ArgumentRule, Condition, Presence};
use crate::policy::{authorize_calls, Glob, Rule, RuleSet};

fn path_rule(shadow: bool) -> ArgumentRule {
    ArgumentRule {
        name: ArgumentName::parse("path").unwrap(),
        presence: Presence::Required,
        conditions: vec![Condition::Glob(Glob::new("/srv/data/**"))],
        shadow,
    }
}

/// `read_file` needs `files:read` and a path under /srv/data; `echo` needs `echo`.
fn policy(entry_shadow: bool, argument_shadow: bool, route_shadow: bool) -> Policy {
    let rule = |p: &str, s: &str| Rule {
        glob: Glob::new(p),
        scopes: vec![s.to_string()],
        claims: vec![],
    };
    let (tools, _) = RuleSet::new(vec![rule("read_file", "files:read"), rule("echo", "echo")]);
    let mut call_rules = CallRules::default();
    call_rules.insert(
        EntryKind::Tools,
        "read_file",
        EntryRules {
            arguments: ArgumentRules {
                rules: vec![path_rule(argument_shadow)],
                deny_additional: false,
                exempt: &[],
            },
            shadow: entry_shadow,
        },
    );
    Policy {
        tools,
        call_rules,
        shadow: route_shadow,
        ..Policy::default()
    }
}

fn call(path: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"read_file","arguments":{{"path":"{path}"}}}}}}"#
    )
}

fn granted(s: &[&str]) -> Vec<String> {
    s.iter().map(|x| x.to_string()).collect()
}

/// Authorizes `body` as the request path does; the denial's message, or `None`, and
/// the shadow decisions (rule, decision label).
fn run(p: &Policy, scopes: &[&str], body: &str) -> (Option<String>, Vec<(String, &'static str)>) {
    let inspected = inspect(body.as_bytes()).unwrap();
    let args = CallArguments::new(body.as_bytes());
    let (result, _, shadowed) =
        authorize_calls(Some(p), &granted(scopes), Some(&inspected), &|i, h| {
            args.of(i, h)
        });
    (
        result.err().map(|d| d.message),
        shadowed
            .into_iter()
            .map(|(_, s)| (s.rule, s.decision.label()))
            .collect(),
    )
}

#[test]
fn argument_rules_refuse_after_scopes_permit() {
    let p = policy(false, false, false);
    assert_eq!(
        run(&p, &["files:read"], &call("/srv/data/a")),
        (None, vec![])
    );
    let (denied, _) = run(&p, &["files:read"], &call("/srv/data/../../etc/passwd"));
    let denied = denied.unwrap();
    assert!(
        denied.contains("tool `read_file`: argument `/path` contains a `..` segment"),
        "{denied}"
    );
    assert!(!denied.contains("passwd"), "never the value: {denied}");
    let body = call("/etc/passwd");
    let inspected = inspect(body.as_bytes()).unwrap();
    let args = CallArguments::new(body.as_bytes());
    let (result, _, _) = authorize_calls(
        Some(&p),
        &granted(&["files:read"]),
        Some(&inspected),
        &|i, h| args.of(i, h),
    );
    let denial = result.unwrap_err();
    assert!(denial.not_permitted, "no step-up for an argument rule");
    assert!(denial.needed.is_empty());
    // Without the scope, scopes decide (and a step-up may help): arguments are not read.
    let inspected = inspect(call("/etc/passwd").as_bytes()).unwrap();
    let (result, verdicts, _) =
        authorize_calls(Some(&p), &granted(&[]), Some(&inspected), &|_, _| {
            panic!("arguments read for a call scopes refuse")
        });
    assert!(!result.unwrap_err().not_permitted);
    assert_eq!(verdicts[0].decision.rule(), Some("scopes"));
}

#[test]
fn the_audit_rule_names_the_argument() {
    let p = policy(false, false, false);
    let body = call("/etc/passwd");
    let args = CallArguments::new(body.as_bytes());
    let judgment = p.judge(
        &granted(&["files:read"]),
        Operation::Tool("read_file"),
        0,
        &|i, h| args.of(i, h),
    );
    assert_eq!(judgment.decision.rule(), Some("arguments:/path"));
    assert_eq!(judgment.decision.label(), "deny");
    assert_eq!(judgment.arguments.len(), 1);
}

/// A second spelling of `arguments` is refused: the upstream may read either.
#[test]
fn unreadable_arguments_are_refused() {
    let p = policy(false, false, false);
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/srv/data/a"},"Arguments":{"path":"/etc/passwd"}}}"#;
    let (denied, _) = run(&p, &["files:read"], body);
    assert!(denied.unwrap().contains("its `arguments` is spelled twice"));
}

#[test]
fn a_shadow_argument_rule_records_and_does_not_refuse() {
    let p = policy(false, true, false);
    assert_eq!(
        run(&p, &["files:read"], &call("/etc/passwd")),
        (
            None,
            vec![("tools:read_file:arguments:/path".to_string(), "deny")]
        )
    );
    assert_eq!(
        run(&p, &["files:read"], &call("/srv/data/a")),
        (
            None,
            vec![("tools:read_file:arguments:/path".to_string(), "allow")]
        )
    );
}

#[test]
fn a_shadow_entry_records_its_decision_and_permits() {
    let p = policy(true, false, false);
    // Missing scope and bad argument: both would deny; neither is enforced.
    assert_eq!(
        run(&p, &[], &call("/etc/passwd")),
        (None, vec![("tools:read_file".to_string(), "deny")])
    );
    assert_eq!(
        run(&p, &["files:read"], &call("/etc/passwd")),
        (None, vec![("tools:read_file".to_string(), "deny")])
    );
    assert_eq!(
        run(&p, &["files:read"], &call("/srv/data/x")),
        (None, vec![("tools:read_file".to_string(), "allow")])
    );
    // Other entries are enforced.
    let echo = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#;
    assert!(run(&p, &[], echo).0.is_some());
    // Lists show what may be called.
    assert!(p.item_visible(&granted(&[]), ListKind::Tools, "read_file"));
    assert!(!p.item_visible(&granted(&[]), ListKind::Tools, "echo"));
}

#[test]
fn a_shadow_route_enforces_nothing_and_records_everything() {
    let p = policy(false, false, true);
    let echo = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#;
    assert_eq!(
        run(&p, &[], echo),
        (None, vec![("policy".to_string(), "deny")])
    );
    let unknown = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"rm"}}"#;
    assert_eq!(
        run(&p, &["echo"], unknown),
        (None, vec![("policy".to_string(), "deny")])
    );
    assert_eq!(
        run(&p, &["echo"], echo),
        (None, vec![("policy".to_string(), "allow")])
    );
    assert!(p.item_visible(&granted(&[]), ListKind::Tools, "rm"));
    // The permit carries only scopes the caller holds (downscoping asks for no more).
    let inspected = inspect(call("/etc").as_bytes()).unwrap();
    let body = call("/etc");
    let args = CallArguments::new(body.as_bytes());
    let (result, _, _) = authorize_calls(Some(&p), &granted(&[]), Some(&inspected), &|i, h| {
        args.of(i, h)
    });
    assert!(result.unwrap().scopes.is_empty());
}

/// In a batch, each call is judged on its own arguments.
#[test]
fn batch_elements_are_judged_on_their_own_arguments() {
    let p = policy(false, false, false);
    let body = format!(
        "[{},{}]",
        call("/srv/data/a"),
        call("/etc/passwd").replace(r#""id":1"#, r#""id":2"#)
    );
    let (denied, _) = run(&p, &["files:read"], &body);
    assert!(denied.unwrap().contains("argument `/path`"));
    let body = format!(
        "[{},{}]",
        call("/srv/data/a"),
        call("/srv/data/b").replace(r#""id":1"#, r#""id":2"#)
    );
    assert_eq!(run(&p, &["files:read"], &body).0, None);
}

struct Caller {
    scopes: Vec<String>,
    claims: crate::policy::ClaimSet,
}

impl Grants for Caller {
    fn scopes(&self) -> &[String] {
        &self.scopes
    }
    fn claims(&self) -> &crate::policy::ClaimSet {
        &self.claims
    }
}

/// Claim rules in shadow mode: the route's `require` and an entry's, recorded for calls
/// and for requests without a body, never refusing and never hiding.
#[test]
fn shadow_claim_rules_record_and_do_not_refuse() {
    use crate::policy::{ClaimName, ClaimRule, ClaimSet};
    let shadow_rule = |claim: &str, value: &str| ClaimRule {
        claim: ClaimName::parse(claim).unwrap(),
        values: vec![value.to_string()],
        shadow: true,
    };
    let (tools, _) = RuleSet::new(vec![Rule {
        glob: Glob::new("deploy"),
        scopes: vec![],
        claims: vec![shadow_rule("groups", "sre")],
    }]);
    let p = Policy {
        tools,
        require: vec![shadow_rule("tid", "t1")],
        ..Policy::default()
    };
    let names = [
        ClaimName::parse("groups").unwrap(),
        ClaimName::parse("tid").unwrap(),
    ];
    let who = |claims: serde_json::Value| Caller {
        scopes: vec![],
        claims: ClaimSet::collect(&names, &claims),
    };
    let deploy = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"deploy"}}"#;
    let inspected = inspect(deploy.as_bytes()).unwrap();
    let run = |caller: &Caller, inspected: Option<&crate::mcp::jsonrpc::Inspected>| {
        let (result, _, shadowed) = authorize_calls(Some(&p), caller, inspected, &|_, _| Ok(None));
        assert!(result.is_ok(), "a shadow claim rule refused");
        shadowed
            .into_iter()
            .map(|(_, s)| (s.rule, s.decision.label()))
            .collect::<Vec<_>>()
    };
    let outsider = who(serde_json::json!({"groups": ["dev"], "tid": "t2"}));
    assert_eq!(
        run(&outsider, Some(&inspected)),
        vec![
            ("require:claims:tid".to_string(), "deny"),
            ("tools:deploy:claims:groups".to_string(), "deny"),
        ]
    );
    let insider = who(serde_json::json!({"groups": ["sre"], "tid": "t1"}));
    assert_eq!(
        run(&insider, Some(&inspected)),
        vec![
            ("require:claims:tid".to_string(), "allow"),
            ("tools:deploy:claims:groups".to_string(), "allow"),
        ]
    );
    // A GET stream or DELETE: only the route's rules apply.
    assert_eq!(
        run(&outsider, None),
        vec![("require:claims:tid".to_string(), "deny")]
    );
    assert!(p.item_visible(&outsider, ListKind::Tools, "deploy"));
}

//! Argument rules and modes in the configuration.

use super::super::*;
use crate::policy::arguments::{Condition, Presence};
use crate::policy::{EntryKind, Operation};

fn load(text: &str) -> Result<Loaded, Vec<String>> {
    validate("gw.yaml", text).map_err(|errors| errors.iter().map(ToString::to_string).collect())
}

fn file(policy: &str) -> String {
    format!(
        "issuers:
  - name: corp
    issuer: https://idp.example.com
routes:
  - name: files
    match: {{ path: /files/mcp }}
    public_url: https://mcp.example.com/files/mcp
    upstream: {{ url: 'http://127.0.0.1:3001/mcp' }}
    auth: {{ issuers: [corp] }}
    upstream_auth: {{ none: {{}} }}
    policy:
{policy}"
    )
}

#[test]
fn argument_rules_and_modes_load() {
    let loaded = load(&file(
        "      mode: shadow
      tools:
        read_file:
          scopes: [files:read]
          mode: shadow
          additional_arguments: deny
          arguments:
            path: { glob: '/srv/data/**', mode: shadow }
            mode: { one_of: [text, base64, 1, true] }
            /options/depth: { min: 0, max: 3, optional: true }
            debug: { present: false }
            q: { regex: '[a-z]+', max_length: 10 }
            paths: { max_length: 5, each: { glob: '/srv/data/**', max_length: 200 } }
      resources:
        'file:///*':
          scopes: [files:read]
          arguments:
            uri: { prefix: 'file:///srv/' }
      prompts:
        greet:
          scopes: []
          arguments:
            name: { max_length: 20 }
",
    ))
    .unwrap();
    let policy = loaded.config.routes[0].policy.as_ref().unwrap();
    assert!(policy.shadow);
    let (kind, pattern, entry) = policy.entry_rules(Operation::Tool("read_file")).unwrap();
    assert_eq!((kind, pattern), (EntryKind::Tools, "read_file"));
    assert!(entry.shadow);
    assert!(entry.arguments.deny_additional);
    let rules = &entry.arguments.rules;
    assert_eq!(rules.len(), 6);
    let by = |n: &str| rules.iter().find(|r| r.name.as_str() == n).unwrap();
    assert!(by("path").shadow);
    assert_eq!(by("/options/depth").presence, Presence::Optional);
    assert_eq!(by("/options/depth").conditions.len(), 2);
    assert_eq!(by("debug").presence, Presence::Absent);
    assert_eq!(by("q").conditions.len(), 2);
    assert!(matches!(
        by("paths").conditions.as_slice(),
        [Condition::Each(items), Condition::MaxLength(5)] if items.len() == 2
    ));
    let (_, _, resource) = policy
        .entry_rules(Operation::Resource {
            method: "resources/read",
            uri: "file:///x",
        })
        .unwrap();
    assert!(resource.arguments.exempt.contains(&"uri"));
    assert!(policy.entry_rules(Operation::Prompt("greet")).is_some());
}

/// Each mistake is reported at the line of the key it concerns.
#[test]
fn mistakes_are_reported_with_positions() {
    let cases = [
        ("      mode: loud\n", "gw.yaml:12:", "routes[0].policy.mode: must be `enforce` or `shadow`"),
        (
            "      tools:\n        t:\n          scopes: [a]\n          additional_arguments: maybe\n",
            "gw.yaml:15:",
            "additional_arguments: must be `allow` or `deny`",
        ),
        (
            "      tools:\n        t:\n          scopes: [a]\n          arguments:\n            p: { regex: '(' }\n",
            "gw.yaml:16:",
            "arguments.p.regex: not a valid regex",
        ),
        (
            "      tools:\n        t:\n          scopes: [a]\n          arguments:\n            p: { min: 5, max: 1 }\n",
            "gw.yaml:16:",
            "`min` is above `max`",
        ),
        (
            "      tools:\n        t:\n          scopes: [a]\n          arguments:\n            p: { glob: '/a/*', max: 1 }\n",
            "gw.yaml:16:",
            "can never both hold",
        ),
        (
            "      tools:\n        t:\n          scopes: [a]\n          arguments:\n            p: { present: false, prefix: /a }\n",
            "gw.yaml:16:",
            "takes no other condition",
        ),
        (
            "      tools:\n        t:\n          scopes: [a]\n          arguments:\n            p: {}\n",
            "gw.yaml:16:",
            "a rule needs a condition",
        ),
        (
            "      tools:\n        t:\n          scopes: [a]\n          arguments:\n            p: { one_of: [] }\n",
            "gw.yaml:16:",
            "list at least one value",
        ),
        (
            "      tools:\n        t:\n          scopes: [a]\n          arguments:\n            p: { one_of: [[1]] }\n",
            "gw.yaml:16:",
            "strings, numbers or booleans",
        ),
        (
            "      tools:\n        t:\n          scopes: [a]\n          arguments:\n            /a~2: { prefix: x }\n",
            "gw.yaml:16:",
            "`~` must be followed by 0 or 1",
        ),
        (
            "      tools:\n        t:\n          scopes: [a]\n          arguments:\n            p: { max: .inf }\n",
            "gw.yaml:16:",
            "must be a finite number",
        ),
        (
            "      tools:\n        t:\n          scopes: [a]\n          arguments:\n            p: { each: { optional: true, glob: '/a/*' } }\n",
            "gw.yaml:16:",
            "`each` takes conditions only",
        ),
        (
            "      tools:\n        t:\n          scopes: [a]\n          arguments:\n            p: { each: {} }\n",
            "gw.yaml:16:",
            "`each` needs a condition on the items",
        ),
        (
            "      tools:\n        t:\n          scopes: [a]\n          arguments:\n            p: { prefix: /a, each: { prefix: /a } }\n",
            "gw.yaml:16:",
            "`each` needs an array",
        ),
        (
            "      tools:\n        t:\n          scopes: [a]\n          arguments:\n            p: { each: { each: { prefix: /a } } }\n",
            "gw.yaml:16:",
            "`each` takes conditions only",
        ),
        (
            "      methods:\n        'tasks/*':\n          scopes: [a]\n          mode: shadow\n",
            "gw.yaml:14:",
            "apply to tools, prompts and resources",
        ),
    ];
    for (policy, at, why) in cases {
        let errs = load(&file(policy)).err().unwrap_or_default();
        assert!(
            errs.iter().any(|e| e.starts_with(at) && e.contains(why)),
            "{policy}: want {at} … {why}: {errs:?}"
        );
    }
    let long = format!(
        "      tools:\n        t:\n          scopes: [a]\n          arguments:\n            p: {{ regex: '{}' }}\n",
        "a".repeat(2000)
    );
    let errs = load(&file(&long)).err().unwrap_or_default();
    assert!(
        errs.iter().any(|e| e.contains("at most 1024 bytes")),
        "{errs:?}"
    );
}

#[test]
fn claim_rules_take_a_mode_in_the_long_form() {
    let loaded = load(&file(
        "      require:
        claims:
          tid: { values: [t1], mode: shadow }
      tools:
        deploy:
          scopes: [a]
          claims:
            groups: [sre]
            /realm_access/roles: { values: [admin] }
",
    ))
    .unwrap();
    let policy = loaded.config.routes[0].policy.as_ref().unwrap();
    assert!(policy.require[0].shadow);
    let rule = policy.tools.find("deploy").unwrap();
    assert_eq!(rule.claims.len(), 2);
    assert!(rule.claims.iter().all(|c| !c.shadow));
    let errs = load(&file(
        "      require:\n        claims:\n          tid: { values: [t1], mode: loud }\n",
    ))
    .err()
    .unwrap_or_default();
    assert!(
        errs.iter().any(|e| e.starts_with("gw.yaml:14:")
            && e.contains(
                "routes[0].policy.require.claims.tid.mode: must be `enforce` or `shadow`"
            )),
        "{errs:?}"
    );
}

/// serde's untagged reading cannot say which key of a long-form rule was wrong; the
/// message names the keys a rule and an argument rule may have.
#[test]
fn a_misspelt_condition_is_reported_with_the_keys_it_may_have() {
    let errs = load(&file(
        "      tools:\n        t:\n          scopes: [a]\n          arguments:\n            p: { globb: '/a/*' }\n",
    ))
    .err()
    .unwrap_or_default();
    assert!(
        errs.iter().any(|e| e.contains("routes[0].policy.tools.t")
            && e.contains("`arguments`")
            && e.contains("`glob`")),
        "{errs:?}"
    );
    let errs = load(&file(
        "      require:\n        claims:\n          tid: { values: [t1], mod: shadow }\n",
    ))
    .err()
    .unwrap_or_default();
    assert!(
        errs.iter()
            .any(|e| e.contains("require.claims.tid")
                && e.contains("{ values: [sre], mode: shadow }")),
        "{errs:?}"
    );
}

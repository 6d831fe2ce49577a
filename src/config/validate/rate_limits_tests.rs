//! `rate_limit` on routes and on tool rules: what is accepted, the defaults, and each
//! error with its position.

use std::time::Duration;

use super::*;
use crate::ratelimit::{KeyKind, RateLimit, DEFAULT_MAX_KEYS};

fn load(text: &str) -> Result<Loaded, Vec<String>> {
    validate("gw.yaml", text).map_err(|errors| errors.iter().map(ToString::to_string).collect())
}

/// A protected route (line 5 is its name) with `route_extra` after `upstream_auth`
/// (from line 11) and a public one after it.
fn file(route_extra: &str, public_extra: &str) -> String {
    format!(
        "issuers:
  - name: corp
    issuer: https://idp.example.com
routes:
  - name: secure
    match: {{ path: /secure/mcp }}
    public_url: https://mcp.example.com/secure/mcp
    upstream: {{ url: 'http://127.0.0.1:3001/mcp' }}
    auth: {{ issuers: [corp] }}
    upstream_auth: {{ none: {{}} }}
{route_extra}  - name: open
    match: {{ path: /open/mcp }}
    upstream: {{ url: 'http://127.0.0.1:3002/mcp' }}
{public_extra}"
    )
}

#[test]
fn route_and_tool_limits_are_read_with_their_defaults() {
    let text = file(
        "    rate_limit: { requests: 60, per: 1m, burst: 20, key: subject }
    policy:
      tools:
        echo: [tools:echo]
        deploy:
          scopes: [tools:deploy]
          rate_limit: { requests: 5, per: 1h, key: client, max_keys: 10 }
",
        "    rate_limit: { requests: 10, per: 1s, key: client }\n",
    );
    let loaded = load(&text).unwrap();
    let secure = &loaded.config.routes[0];
    assert_eq!(
        secure.rate_limit,
        Some(RateLimit {
            requests: 60,
            per: Duration::from_secs(60),
            burst: 20,
            key: KeyKind::Subject,
            max_keys: DEFAULT_MAX_KEYS,
        })
    );
    assert_eq!(
        secure.tool_rate_limits,
        vec![(
            "deploy".to_string(),
            RateLimit {
                requests: 5,
                per: Duration::from_secs(3600),
                burst: 5,
                key: KeyKind::Client,
                max_keys: 10,
            }
        )]
    );
    let open = &loaded.config.routes[1];
    assert_eq!(
        open.rate_limit.map(|l| (l.burst, l.key)),
        Some((10, KeyKind::Client))
    );
    assert!(open.tool_rate_limits.is_empty());
    assert_eq!(
        load(&file("", "")).unwrap().config.routes[0].rate_limit,
        None
    );
}

#[test]
fn each_bad_setting_is_named_at_its_position_without_its_value() {
    let text = file(
        "    rate_limit: { requests: 0, per: 2d, burst: 3, key: user, max_keys: 0 }
    policy:
      tools:
        deploy:
          rate_limit: { requests: 1, per: 25h, key: route }
      resources:
        \"file:///*\":
          scopes: [files:read]
          rate_limit: { requests: 1, per: 1m, key: route }
",
        "    rate_limit: { requests: 5, per: 1m, burst: 6, key: subject }\n",
    );
    let errors = load(&text).unwrap_err();
    for (line, path, message) in [
        (11, "routes[0].rate_limit.requests", "from 1 to 1000000"),
        (11, "routes[0].rate_limit.per", "unknown unit"),
        (
            11,
            "routes[0].rate_limit.key",
            "`subject`, `client` or `route`",
        ),
        (11, "routes[0].rate_limit.max_keys", "from 1 to 10000000"),
        (
            15,
            "routes[0].policy.tools.deploy.rate_limit.per",
            "from 1s to 24h",
        ),
        (
            19,
            "routes[0].policy.resources.file:///*.rate_limit",
            "tools (and whole routes) only",
        ),
        (23, "routes[1].rate_limit.burst", "from 1 to `requests`"),
        (23, "routes[1].rate_limit.key", "needs an `auth` block"),
    ] {
        let prefix = format!("gw.yaml:{line}:");
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with(&prefix) && e.contains(path) && e.contains(message)),
            "no `{path}: …{message}…` at line {line} in {errors:#?}"
        );
    }
    // `burst` is not judged against a `requests` that is itself wrong.
    assert!(!errors
        .iter()
        .any(|e| e.contains("routes[0].rate_limit.burst")));
    assert_eq!(errors.len(), 8, "{errors:#?}");
    assert!(!errors.iter().any(|e| e.contains("user")), "{errors:#?}");
}

#[test]
fn shape_errors_in_a_rate_limit_are_reported() {
    let errors = load(&file(
        "    rate_limit: { requests: lots, per: 1m, key: route }\n",
        "    rate_limit: { per: 1m, key: route, bucket: 3 }\n",
    ))
    .unwrap_err();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("routes[0].rate_limit.requests")),
        "{errors:#?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("routes[1].rate_limit")),
        "{errors:#?}"
    );
    // In a tool rule's long form the rule is named, with the keys it may have.
    let errors = load(&file(
        "    policy:
      tools:
        deploy:
          rate_limit: { requests: many, per: 1m, key: route }
",
        "",
    ))
    .unwrap_err();
    assert!(
        errors.iter().any(|e| e.starts_with("gw.yaml:13:")
            && e.contains("routes[0].policy.tools.deploy")
            && e.contains("`rate_limit`")),
        "{errors:#?}"
    );
}

//! Accepted audiences, issuers' claim mappings, claim rules and the issuer warnings.

use super::*;
use crate::policy::{ClaimName, Operation};

fn load(text: &str) -> Result<Loaded, Vec<String>> {
    validate("gw.yaml", text).map_err(|errors| errors.iter().map(ToString::to_string).collect())
}

fn errors(text: &str) -> Vec<String> {
    load(text).err().unwrap_or_default()
}

fn file(issuer_extra: &str, auth_extra: &str, policy: &str) -> String {
    format!(
        "issuers:
  - name: corp
    issuer: https://idp.example.com
{issuer_extra}routes:
  - name: secure
    match: {{ path: /secure/mcp }}
    public_url: https://mcp.example.com/secure/mcp
    upstream: {{ url: 'http://127.0.0.1:3001/mcp' }}
    auth: {{ issuers: [corp]{auth_extra} }}
    upstream_auth: {{ none: {{}} }}
{policy}"
    )
}

#[test]
fn audiences_default_to_the_public_url_and_are_checked() {
    let loaded = load(&file("", "", "")).unwrap();
    let auth = loaded.config.routes[0].auth.as_ref().unwrap();
    assert!(auth.audiences.is_empty());

    let loaded = load(&file(
        "",
        ", audiences: ['api://drawbridge', 'https://mcp.example.com/secure/mcp']",
        "",
    ))
    .unwrap();
    let auth = loaded.config.routes[0].auth.as_ref().unwrap();
    assert_eq!(
        auth.audiences,
        vec!["api://drawbridge", "https://mcp.example.com/secure/mcp"]
    );
    assert!(!loaded.warnings.iter().any(|w| w.contains("audiences")));

    // Without the public_url, RFC 8707 clients' tokens are refused: a warning says so.
    let loaded = load(&file("", ", audiences: ['api://drawbridge']", "")).unwrap();
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| w.contains("routes[0].auth.audiences does not list the route's public_url")),
        "{:?}",
        loaded.warnings
    );

    for (bad, why) in [
        (", audiences: []", "list at least one audience"),
        (", audiences: ['']", "non-empty value"),
        (", audiences: [' x']", "leading or trailing spaces"),
        (", audiences: [a, a]", "listed twice"),
    ] {
        let errs = errors(&file("", bad, ""));
        assert!(
            errs.iter()
                .any(|e| e.contains("routes[0].auth.audiences") && e.contains(why)),
            "{bad}: {errs:?}"
        );
    }
}

#[test]
fn claim_mappings_default_and_are_checked() {
    let loaded = load(&file("", "", "")).unwrap();
    assert_eq!(
        loaded.config.issuers[0].claims,
        crate::config::ClaimMapping::default()
    );
    let loaded = load(&file(
        "    claims:
      subject: oid
      client: [azp, appid]
      permissions:
        - roles
        - { claim: /realm_access/roles, prefix: 'realm:' }
",
        "",
        "",
    ))
    .unwrap();
    let claims = &loaded.config.issuers[0].claims;
    assert_eq!(claims.subject.as_str(), "oid");
    assert_eq!(
        claims
            .client
            .iter()
            .map(ClaimName::as_str)
            .collect::<Vec<_>>(),
        ["azp", "appid"]
    );
    assert_eq!(claims.permissions.len(), 2);
    assert_eq!(claims.permissions[0].prefix, "");
    assert_eq!(claims.permissions[1].claim.as_str(), "/realm_access/roles");
    assert_eq!(claims.permissions[1].prefix, "realm:");

    for (bad, at, why) in [
        (
            "    claims: { subject: '' }\n",
            "issuers[0].claims.subject",
            "must not be empty",
        ),
        (
            "    claims: { client: [] }\n",
            "issuers[0].claims.client",
            "at least one",
        ),
        (
            "    claims: { permissions: [scp] }\n",
            "issuers[0].claims.permissions[0]",
            "always read",
        ),
        (
            "    claims: { permissions: ['/a~2'] }\n",
            "issuers[0].claims.permissions[0]",
            "RFC 6901",
        ),
        (
            "    claims: { permissions: [{ claim: roles, prefix: 'a b' }] }\n",
            "issuers[0].claims.permissions[0].prefix",
            "printable ASCII",
        ),
        (
            "    claims: { permissions: [{ name: roles }] }\n",
            "issuers[0].claims.permissions[0]",
            "expected a claim name",
        ),
    ] {
        let errs = errors(&file(bad, "", ""));
        assert!(
            errs.iter().any(|e| e.contains(at) && e.contains(why)),
            "{bad}: {errs:?}"
        );
    }
}

#[test]
fn claim_rules_in_the_short_and_long_forms() {
    let policy = "    policy:
      require:
        claims: { tid: [t1] }
      tools:
        echo: [tools:echo]
        deploy:
          scopes: [tools:deploy]
          claims: { groups: [sre, platform], /realm_access/roles: [deployer] }
        status: { claims: { groups: [ops] } }
";
    let loaded = load(&file("", "", policy)).unwrap();
    let p = loaded.config.routes[0].policy.as_ref().unwrap();
    assert_eq!(p.require.len(), 1);
    assert_eq!(p.require[0].label(), "claims:tid");
    let deploy = p.tools.find("deploy").unwrap();
    assert_eq!(deploy.scopes, vec!["tools:deploy"]);
    let labels: Vec<String> = deploy.claims.iter().map(|c| c.label()).collect();
    assert_eq!(labels, ["claims:/realm_access/roles", "claims:groups"]);
    assert_eq!(deploy.claims[1].values, vec!["sre", "platform"]);
    let echo = p.tools.find("echo").unwrap();
    assert!(echo.claims.is_empty());
    assert_eq!(
        p.required_scopes_for(Operation::Tool("status")),
        Some(&[][..])
    );

    for (bad, at, why) in [
        (
            "    policy:\n      tools:\n        deploy: { claims: { groups: [] } }\n",
            "routes[0].policy.tools.deploy.claims.groups",
            "never be satisfied",
        ),
        (
            "    policy:\n      require: { claims: { '/a~': [x] } }\n",
            "routes[0].policy.require.claims./a~",
            "RFC 6901",
        ),
        (
            "    policy:\n      tools:\n        deploy: { scopes: [a], unknown_key: {} }\n",
            "routes[0].policy.tools.deploy",
            "expected a list of scopes",
        ),
        (
            "    policy:\n      tools:\n        deploy: { scopes: ['a b'] }\n",
            "routes[0].policy.tools.deploy",
            "a scope is printable ASCII",
        ),
    ] {
        let errs = errors(&file("", "", bad));
        assert!(
            errs.iter().any(|e| e.contains(at) && e.contains(why)),
            "{bad}: {errs:?}"
        );
    }
}

#[test]
fn plain_http_issuers_and_unused_issuers_are_warned_about() {
    let text = "issuers:
  - name: corp
    issuer: https://idp.example.com
  - name: local
    issuer: http://127.0.0.1:9000
  - name: lab
    issuer: http://idp.lab.example
    allow_insecure_http: true
routes:
  - name: secure
    match: { path: /secure/mcp }
    public_url: https://mcp.example.com/secure/mcp
    upstream: { url: 'http://127.0.0.1:3001/mcp' }
    auth: { issuers: [corp, lab] }
    upstream_auth:
      client_credentials: { issuer: local, client_id: gw, client_secret: s }
";
    let loaded = load(text).unwrap();
    let warned = |needle: &str| {
        loaded
            .warnings
            .iter()
            .filter(|w| w.contains(needle))
            .count()
    };
    assert_eq!(
        warned("issuer `lab` uses plain http off loopback"),
        1,
        "{:?}",
        loaded.warnings
    );
    assert_eq!(
        warned("uses plain http"),
        1,
        "loopback http is not warned about"
    );
    assert_eq!(warned("no route uses issuer"), 0, "{:?}", loaded.warnings);

    let unused = text.replace("issuers: [corp, lab]", "issuers: [lab]");
    let loaded = load(&unused).unwrap();
    let unused: Vec<&String> = loaded
        .warnings
        .iter()
        .filter(|w| w.contains("no route uses issuer"))
        .collect();
    assert_eq!(unused.len(), 1, "{unused:?}");
    assert!(unused[0].starts_with("issuers[0]: no route uses issuer `corp`"));
}

#[test]
fn an_issuer_used_only_for_on_behalf_of_is_in_use() {
    let text = "issuers:
  - name: corp
    issuer: https://idp.example.com
  - name: entra
    issuer: https://login.example.com/tenant/v2.0
routes:
  - name: secure
    match: { path: /secure/mcp }
    public_url: https://mcp.example.com/secure/mcp
    upstream: { url: 'http://127.0.0.1:3001/mcp' }
    auth: { issuers: [corp] }
    upstream_auth:
      on_behalf_of: { issuer: entra, client_id: gw, client_secret: s, scopes: ['api://up/.default'] }
";
    let loaded = load(text).unwrap();
    assert!(
        !loaded
            .warnings
            .iter()
            .any(|w| w.contains("no route uses issuer")),
        "{:?}",
        loaded.warnings
    );
}

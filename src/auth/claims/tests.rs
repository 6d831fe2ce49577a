use super::*;
use crate::config::PermissionClaim;
use serde_json::json;

fn name(s: &str) -> ClaimName {
    ClaimName::parse(s).unwrap()
}

fn mapping(subject: &str, client: &[&str], permissions: &[(&str, &str)]) -> ClaimMapping {
    ClaimMapping {
        subject: name(subject),
        client: client.iter().map(|c| name(c)).collect(),
        permissions: permissions
            .iter()
            .map(|(c, p)| PermissionClaim {
                claim: name(c),
                prefix: p.to_string(),
            })
            .collect(),
    }
}

fn strings(s: &[&str]) -> Vec<String> {
    s.iter().map(|x| x.to_string()).collect()
}

/// The default mapping reads `sub`, the first of `client_id`/`azp`/`cid`/`appid`, and
/// scopes from `scope` or else `scp`.
#[test]
fn defaults_read_sub_client_and_scopes() {
    let m = ClaimMapping::default();
    let id = identity(
        &m,
        &[],
        &json!({"sub":"alice","azp":"web","cid":"x","scope":"a b a"}),
    )
    .unwrap();
    assert_eq!(id.subject, "alice");
    assert_eq!(id.client.as_deref(), Some("web"));
    assert_eq!(id.scopes, strings(&["a", "b"]));
    // Okta: scp array, cid.
    let id = identity(
        &m,
        &[],
        &json!({"sub":"u","cid":"0oa1","scp":["openid","tools:echo"]}),
    )
    .unwrap();
    assert_eq!(id.client.as_deref(), Some("0oa1"));
    assert_eq!(id.scopes, strings(&["openid", "tools:echo"]));
    // Entra v2: scp is a space-separated string.
    let id = identity(
        &m,
        &[],
        &json!({"sub":"u","appid":"app","scp":"Tools.Read Tools.Write"}),
    )
    .unwrap();
    assert_eq!(id.client.as_deref(), Some("app"));
    assert_eq!(id.scopes, strings(&["Tools.Read", "Tools.Write"]));
    // `scope` wins over `scp`, as before.
    let id = identity(&m, &[], &json!({"sub":"u","scope":"a","scp":["b"]})).unwrap();
    assert_eq!(id.scopes, strings(&["a"]));
    let id = identity(&m, &[], &json!({"sub":"u"})).unwrap();
    assert!(id.scopes.is_empty() && id.client.is_none());
}

#[test]
fn subject_and_client_follow_the_mapping() {
    let m = mapping("oid", &["appid", "azp"], &[]);
    let id = identity(
        &m,
        &[],
        &json!({"sub":"pairwise","oid":"0000-oid","azp":"a","appid":"b"}),
    )
    .unwrap();
    assert_eq!(id.subject, "0000-oid");
    assert_eq!(id.client.as_deref(), Some("b"));
    // The configured subject claim is required; `sub` does not stand in for it.
    assert_eq!(
        identity(&m, &[], &json!({"sub":"pairwise"})),
        Err(TokenError::MissingClaim)
    );
    assert_eq!(
        identity(&m, &[], &json!({"oid": 7})),
        Err(TokenError::InvalidClaim)
    );
    assert_eq!(
        identity(&m, &[], &json!({"oid": ""})),
        Err(TokenError::InvalidClaim)
    );
    // A client claim of another type is skipped for the next one.
    let id = identity(&m, &[], &json!({"oid":"o","appid":{"x":1},"azp":"a"})).unwrap();
    assert_eq!(id.client.as_deref(), Some("a"));
}

/// Permission claims are granted like scopes, with their prefix; nested ones by JSON
/// pointer (Keycloak), arrays (Auth0, Entra roles) or a single string.
#[test]
fn permission_claims_are_mapped_with_their_prefix() {
    let m = mapping(
        "sub",
        &["azp"],
        &[
            ("/realm_access/roles", "realm:"),
            ("/resource_access/drawbridge/roles", ""),
            ("permissions", ""),
            ("roles", "role:"),
        ],
    );
    let claims = json!({
        "sub": "u", "azp": "kc", "scope": "profile",
        "realm_access": {"roles": ["admin", "offline_access"]},
        "resource_access": {"drawbridge": {"roles": ["tools:deploy"]}, "account": {"roles": ["view"]}},
        "permissions": ["read:tools", "profile"],
        "roles": "Deployer",
    });
    let id = identity(&m, &[], &claims).unwrap();
    assert_eq!(
        id.scopes,
        strings(&[
            "profile",
            "realm:admin",
            "realm:offline_access",
            "tools:deploy",
            "read:tools",
            "role:Deployer"
        ])
    );
    // Absent permission claims grant nothing and refuse nothing.
    let id = identity(&m, &[], &json!({"sub":"u"})).unwrap();
    assert!(id.scopes.is_empty());
}

/// A permission claim of another type refuses the token: fail closed, and loudly.
#[test]
fn ill_typed_permission_or_scope_claims_refuse_the_token() {
    let m = mapping("sub", &[], &[("roles", ""), ("/realm_access/roles", "")]);
    for bad in [
        json!({"sub":"u","roles": 1}),
        json!({"sub":"u","roles": {"admin": true}}),
        json!({"sub":"u","roles": ["a", 2]}),
        json!({"sub":"u","realm_access": {"roles": "a"}, "roles": [null]}),
        json!({"sub":"u","scope": ["a"]}),
        json!({"sub":"u","scp": 3}),
    ] {
        assert_eq!(
            identity(&m, &[], &bad),
            Err(TokenError::InvalidClaim),
            "{bad}"
        );
    }
}

/// Only the claims rules name are kept, and only with usable values.
#[test]
fn only_rule_claims_are_kept() {
    let names = [name("groups"), name("tid"), name("/realm_access/roles")];
    let claims = json!({
        "sub":"u", "groups":["sre"], "tid": 5, "email":"u@example.com",
        "realm_access": {"roles": ["admin"]},
    });
    let id = identity(&ClaimMapping::default(), &names, &claims).unwrap();
    assert_eq!(id.claims.get(&name("groups")), Some(&strings(&["sre"])[..]));
    assert_eq!(
        id.claims.get(&name("tid")),
        None,
        "ill-typed: holds nothing"
    );
    assert_eq!(
        id.claims.get(&name("/realm_access/roles")),
        Some(&strings(&["admin"])[..])
    );
    assert_eq!(id.claims.get(&name("email")), None);
}

//! Tokens shaped like those of the identity providers enterprises run — Entra ID, Okta,
//! Keycloak, Auth0 — minted by the in-process double with each provider's claim layout
//! and headers. Each is accepted with the configuration docs/identity-providers.md
//! gives, and refused with the wrong one; claim rules decide calls and lists. Every
//! refusal asserts that the upstream received nothing.

use serde_json::{json, Value};

use crate::harness::{audit_events, client, log_when, Gateway};
use crate::idp::{unix_now, Alg, Idp, INTROSPECTION_CLIENT_ID, INTROSPECTION_CLIENT_SECRET};
use crate::upstream::Upstream;

const ENTRA_APP: &str = "6e74172b-be56-4843-9ff4-e66a39bb12e3";
const ENTRA_APP_URI: &str = "api://6e74172b-be56-4843-9ff4-e66a39bb12e3";
const GRAPH: &str = "00000003-0000-0000-c000-000000000000";
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const OID: &str = "3a2b0e6e-0f1d-4c5b-9d7e-1c2b3a4d5e6f";

fn call(id: u64, tool: &str) -> Value {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":{}}})
}

fn list() -> Value {
    json!({"jsonrpc":"2.0","id":"l","method":"tools/list"})
}

async fn post(gw: &Gateway, path: &str, token: &str, body: &Value) -> reqwest::Response {
    client()
        .post(gw.url(path))
        .header("authorization", format!("Bearer {token}"))
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

/// The tool names a `tools/list` answer shows.
async fn listed(gw: &Gateway, path: &str, token: &str) -> Vec<String> {
    let resp = post(gw, path, token, &list()).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    body["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools in {body}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

/// A refusal: `status`, and whether the challenge asks for scopes.
async fn assert_refused(resp: reqwest::Response, status: u16, what: &str) -> Option<String> {
    assert_eq!(resp.status(), status, "{what}");
    resp.headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
}

fn route(name: &str, up: &Upstream, auth_extra: &str, policy: &str) -> String {
    format!(
        "  - name: {name}
    match: {{ path: /{name}/mcp }}
    public_url: https://mcp.example.com/{name}/mcp
    upstream: {{ url: '{}' }}
    auth: {{ issuers: [idp]{auth_extra} }}
{policy}",
        up.url("/mcp")
    )
}

fn times() -> Value {
    let now = unix_now();
    json!({"iat": now, "nbf": now, "exp": now + 300})
}

fn with_times(mut claims: Value) -> Value {
    if let (Some(c), Some(t)) = (claims.as_object_mut(), times().as_object()) {
        c.extend(t.clone());
    }
    claims
}

/// Entra ID v2: `aud` is the application id (or its `api://` URI), scopes in `scp` as
/// one string, app roles in `roles`, the user in `oid`, the tenant in `tid`, header
/// `typ: JWT`. A Graph token (its own audience, a `nonce` header) is refused.
#[tokio::test]
async fn entra_id_tokens() {
    let idp = Idp::start().await;
    let up = Upstream::start().await;
    let policy = format!(
        "    policy:
      require:
        claims: {{ tid: ['{TENANT}'] }}
      tools:
        echo: [Tools.Call]
        delete_repo: {{ scopes: [Tools.Call, role:Repo.Admin], claims: {{ groups: [sre] }} }}
"
    );
    let routes = [
        route(
            "entra",
            &up,
            &format!(", audiences: ['{ENTRA_APP_URI}', '{ENTRA_APP}']"),
            &policy,
        ),
        route("plain", &up, "", ""),
    ]
    .concat();
    let issuers = format!(
        "log: {{ refusals: all }}
issuers:
  - name: idp
    issuer: {}
    claims:
      subject: oid
      client: [azp, appid]
      permissions: [{{ claim: roles, prefix: 'role:' }}]
",
        idp.issuer
    );
    let gw = Gateway::start_with(&routes, &issuers).await;
    let entra = |aud: &str, tid: &str, groups: &[&str]| {
        let claims = with_times(json!({
            "iss": idp.issuer, "aud": aud, "ver": "2.0",
            "sub": "pairwise-subject-for-this-app", "oid": OID, "tid": tid,
            "azp": "c0ffee00-agent", "azpacr": "1",
            "scp": "Tools.Call User.Read", "roles": ["Repo.Admin"], "groups": groups,
        }));
        idp.mint_with_header(Alg::RS256, &json!({"typ": "JWT"}), &claims)
    };
    let sre = entra(ENTRA_APP, TENANT, &["sre"]);
    let by_uri = entra(ENTRA_APP_URI, TENANT, &["dev"]);
    let path = "/entra/mcp";

    assert_eq!(post(&gw, path, &sre, &call(1, "echo")).await.status(), 200);
    assert_eq!(
        post(&gw, path, &by_uri, &call(2, "echo")).await.status(),
        200
    );
    // `role:Repo.Admin` comes from `roles`; `groups` decides the rest.
    assert_eq!(
        post(&gw, path, &sre, &call(3, "delete_repo"))
            .await
            .status(),
        200
    );
    assert_eq!(up.seen().len(), 3);
    assert_eq!(
        listed(&gw, path, &sre).await,
        ["echo", "delete_repo"],
        "the claim holder sees the guarded tool"
    );
    assert_eq!(listed(&gw, path, &by_uri).await, ["echo"]);
    let seen = up.seen().len();

    let challenge = assert_refused(
        post(&gw, path, &by_uri, &call(4, "delete_repo")).await,
        403,
        "no sre group",
    )
    .await;
    assert_eq!(
        challenge, None,
        "a failed claim rule gets no step-up challenge"
    );
    let other_tenant = entra(ENTRA_APP, "a-foreign-tenant", &["sre"]);
    let challenge = assert_refused(
        post(&gw, path, &other_tenant, &call(5, "echo")).await,
        403,
        "tenant",
    )
    .await;
    assert_eq!(challenge, None);
    // The route's requirement also refuses requests without a message (a GET stream).
    let get = client()
        .get(gw.url(path))
        .header("authorization", format!("Bearer {other_tenant}"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 403, "GET stream of another tenant");

    // A Graph token: Microsoft's own audience, a `nonce` in the header.
    let graph = idp.mint_with_header(
        Alg::RS256,
        &json!({"typ": "JWT", "nonce": "AQABAAAAAAB2UyzwtQEKR7-rWbgdcBZI"}),
        &with_times(json!({
            "iss": idp.issuer, "aud": GRAPH, "oid": OID, "tid": TENANT,
            "scp": "Tools.Call User.Read", "azp": "c0ffee00-agent",
        })),
    );
    let challenge = assert_refused(
        post(&gw, path, &graph, &call(6, "echo")).await,
        401,
        "graph",
    )
    .await
    .unwrap();
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{challenge}"
    );
    // Without `audiences`, the route takes only its public_url: Entra tokens are refused.
    assert_refused(
        post(&gw, "/plain/mcp", &sre, &call(7, "echo")).await,
        401,
        "plain",
    )
    .await;
    assert_eq!(up.seen().len(), seen, "a refused call reached the upstream");

    // The audit names the rule that refused, and the caller by the mapped claims.
    let log = log_when(&gw, |log| {
        audit_events(log, "authorization")
            .iter()
            .filter(|e| e["decision"] == "deny")
            .count()
            >= 3
    })
    .await;
    let denied: Vec<Value> = audit_events(&log, "authorization")
        .into_iter()
        .filter(|e| e["decision"] == "deny")
        .collect();
    let rules: Vec<&str> = denied.iter().filter_map(|e| e["rule"].as_str()).collect();
    assert_eq!(
        rules,
        ["claims:groups", "claims:tid", "claims:tid"],
        "{denied:?}"
    );
    assert_eq!(denied[0]["name"], "delete_repo");
    assert_eq!(denied[0]["subject"], OID);
    assert_eq!(denied[0]["client"], "c0ffee00-agent");
    assert!(
        !log.contains("a-foreign-tenant"),
        "claim values are not logged"
    );
}

/// Okta (custom authorization server): `aud` is `api://default`, scopes in `scp` as an
/// array, the client in `cid`, the user's login in `sub`.
#[tokio::test]
async fn okta_tokens() {
    let idp = Idp::start().await;
    let up = Upstream::start().await;
    let policy = "    policy:\n      tools: { echo: [tools:echo] }\n";
    let routes = [
        route("okta", &up, ", audiences: ['api://default']", policy),
        route("plain", &up, "", policy),
    ]
    .concat();
    let issuers = format!(
        "log: {{ refusals: all }}\nissuers:\n  - name: idp\n    issuer: {}\n",
        idp.issuer
    );
    let gw = Gateway::start_with(&routes, &issuers).await;
    let token = idp.mint_with_header(
        Alg::RS256,
        &json!({"typ": null}),
        &with_times(json!({
            "ver": 1, "jti": "AT.x", "iss": idp.issuer, "aud": "api://default",
            "cid": "0oa1b2c3d4e5f6g7h8i9", "uid": "00u1a2b3c4", "sub": "alice@example.com",
            "scp": ["openid", "tools:echo"],
        })),
    );
    assert_eq!(
        post(&gw, "/okta/mcp", &token, &call(1, "echo"))
            .await
            .status(),
        200
    );
    assert_eq!(up.seen().len(), 1);
    let challenge = assert_refused(
        post(&gw, "/okta/mcp", &token, &call(2, "get-env")).await,
        403,
        "unlisted",
    )
    .await;
    assert_eq!(challenge, None);
    let challenge = assert_refused(
        post(&gw, "/plain/mcp", &token, &call(3, "echo")).await,
        401,
        "plain",
    )
    .await
    .unwrap();
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{challenge}"
    );
    assert_eq!(up.seen().len(), 1, "a refused call reached the upstream");
    // The client is read from `cid` by default.
    let denials = |log: &str| -> Vec<Value> {
        audit_events(log, "authorization")
            .into_iter()
            .filter(|e| e["decision"] == "deny")
            .collect()
    };
    let log = log_when(&gw, |log| !denials(log).is_empty()).await;
    let denied = denials(&log);
    assert_eq!(denied[0]["rule"], "default", "{denied:?}");
    assert_eq!(denied[0]["client"], "0oa1b2c3d4e5f6g7h8i9", "{denied:?}");
    assert_eq!(denied[0]["subject"], "alice@example.com");
}

/// Keycloak: several audiences (with `account`), the client in `azp`, realm roles in
/// `realm_access.roles`, client roles in `resource_access.<client>.roles`, payload
/// `typ: Bearer`.
#[tokio::test]
async fn keycloak_tokens() {
    let idp = Idp::start().await;
    let up = Upstream::start().await;
    let policy = "    policy:
      tools:
        echo: [profile]
        delete_repo:
          scopes: [repo:admin]
          claims: { /realm_access/roles: [sre] }
";
    let routes = [
        route("kc", &up, ", audiences: [drawbridge]", policy),
        route("other", &up, ", audiences: [another-client]", policy),
    ]
    .concat();
    let issuers = format!(
        "issuers:
  - name: idp
    issuer: {}
    claims:
      permissions:
        - /resource_access/drawbridge/roles
        - {{ claim: /realm_access/roles, prefix: 'realm:' }}
",
        idp.issuer
    );
    let gw = Gateway::start_with(&routes, &issuers).await;
    let keycloak = |realm_roles: &[&str]| {
        idp.mint_with_header(
            Alg::RS256,
            &json!({"typ": "JWT"}),
            &with_times(json!({
                "iss": idp.issuer, "aud": ["drawbridge", "account"], "typ": "Bearer",
                "azp": "mcp-agent", "sub": "f:1234:alice", "session_state": "s1",
                "scope": "openid profile email",
                "realm_access": {"roles": realm_roles},
                "resource_access": {
                    "drawbridge": {"roles": ["repo:admin"]},
                    "account": {"roles": ["manage-account"]},
                },
            })),
        )
    };
    let sre = keycloak(&["sre", "offline_access"]);
    let dev = keycloak(&["dev"]);
    assert_eq!(
        post(&gw, "/kc/mcp", &sre, &call(1, "echo")).await.status(),
        200
    );
    assert_eq!(
        post(&gw, "/kc/mcp", &sre, &call(2, "delete_repo"))
            .await
            .status(),
        200
    );
    assert_eq!(listed(&gw, "/kc/mcp", &sre).await, ["echo", "delete_repo"]);
    assert_eq!(listed(&gw, "/kc/mcp", &dev).await, ["echo"]);
    let seen = up.seen().len();
    assert_eq!(seen, 4);
    let challenge = assert_refused(
        post(&gw, "/kc/mcp", &dev, &call(3, "delete_repo")).await,
        403,
        "dev",
    )
    .await;
    assert_eq!(challenge, None);
    assert_refused(
        post(&gw, "/other/mcp", &sre, &call(4, "echo")).await,
        401,
        "other aud",
    )
    .await;
    // A Keycloak refresh token is never an access token, whatever it carries.
    let refresh = idp.mint_with_header(
        Alg::RS256,
        &json!({"typ": "JWT"}),
        &with_times(json!({"iss": idp.issuer, "aud": ["drawbridge"], "typ": "Refresh", "azp": "mcp-agent", "sub": "f:1234:alice"})),
    );
    assert_refused(
        post(&gw, "/kc/mcp", &refresh, &call(5, "echo")).await,
        401,
        "refresh",
    )
    .await;
    assert_eq!(up.seen().len(), seen, "a refused call reached the upstream");
}

/// Auth0 with RBAC: the API's identifier in `aud` (here the route's public URL, so no
/// `audiences` is needed), API permissions in `permissions`. Without the permission
/// mapping, the same token lacks the scope.
#[tokio::test]
async fn auth0_tokens() {
    let mapped = Idp::start().await;
    let unmapped = Idp::start().await;
    let up = Upstream::start().await;
    let policy = "    policy:\n      tools: { echo: ['read:tools'] }\n";
    let routes = [
        route("mapped", &up, "", policy),
        route("unmapped", &up, "", policy).replace("issuers: [idp]", "issuers: [bare]"),
    ]
    .concat();
    let issuers = format!(
        "issuers:
  - name: idp
    issuer: {}
    claims: {{ permissions: [permissions] }}
  - name: bare
    issuer: {}
",
        mapped.issuer, unmapped.issuer
    );
    let gw = Gateway::start_with(&routes, &issuers).await;
    let auth0 = |idp: &Idp, route: &str| {
        idp.mint_with_header(
            Alg::RS256,
            &json!({"typ": "JWT"}),
            &with_times(json!({
                "iss": idp.issuer,
                "aud": [format!("https://mcp.example.com/{route}/mcp"), format!("{}userinfo", idp.issuer)],
                "sub": "auth0|64f1c2", "azp": "AbCdEf123", "scope": "openid profile",
                "permissions": ["read:tools"],
            })),
        )
    };
    let token = auth0(&mapped, "mapped");
    assert_eq!(
        post(&gw, "/mapped/mcp", &token, &call(1, "echo"))
            .await
            .status(),
        200
    );
    assert_eq!(up.seen().len(), 1);
    // Without the mapping, the permission is not a scope: a step-up would be asked for.
    let challenge = assert_refused(
        post(
            &gw,
            "/unmapped/mcp",
            &auth0(&unmapped, "unmapped"),
            &call(2, "echo"),
        )
        .await,
        403,
        "unmapped",
    )
    .await
    .unwrap();
    assert!(challenge.contains(r#"scope="read:tools""#), "{challenge}");
    // A permissions claim of another type refuses the token: fail closed, and say why.
    let odd = mapped.mint_with_header(
        Alg::RS256,
        &json!({"typ": "JWT"}),
        &with_times(json!({
            "iss": mapped.issuer, "aud": "https://mcp.example.com/mapped/mcp",
            "sub": "auth0|64f1c2", "permissions": {"read:tools": true},
        })),
    );
    let challenge = assert_refused(
        post(&gw, "/mapped/mcp", &odd, &call(3, "echo")).await,
        401,
        "odd",
    )
    .await
    .unwrap();
    assert!(
        challenge.contains("a claim of an unexpected type"),
        "{challenge}"
    );
    assert_eq!(up.seen().len(), 1, "a refused call reached the upstream");
}

/// Introspection answers go through the same mapping and claim rules as JWTs.
#[tokio::test]
async fn introspected_tokens_are_mapped_and_judged_like_jwts() {
    let idp = Idp::start().await;
    let up = Upstream::start().await;
    let policy = "    policy:
      tools:
        echo: [realm:user]
        delete_repo: { claims: { /realm_access/roles: [sre] } }
";
    let routes = route("kc", &up, ", audiences: [drawbridge]", policy);
    let issuers = format!(
        "log: {{ refusals: all }}
issuers:
  - name: idp
    issuer: {}
    introspection: {{ client_id: {INTROSPECTION_CLIENT_ID}, client_secret: {INTROSPECTION_CLIENT_SECRET} }}
    claims:
      subject: preferred_username
      permissions: [{{ claim: /realm_access/roles, prefix: 'realm:' }}]
",
        idp.issuer
    );
    let gw = Gateway::start_with(&routes, &issuers).await;
    let exp = unix_now() + 300;
    let answer = |roles: Value| {
        json!({"active": true, "iss": idp.issuer, "aud": ["drawbridge", "account"], "sub": "f:1:alice",
               "preferred_username": "alice", "client_id": "mcp-agent", "scope": "openid",
               "exp": exp, "realm_access": {"roles": roles}})
    };
    idp.register_opaque("opaque-sre-1a2b3c4d5e", answer(json!(["user", "sre"])));
    idp.register_opaque("opaque-dev-1a2b3c4d5e", answer(json!(["user"])));
    idp.register_opaque("opaque-odd-1a2b3c4d5e", answer(json!("user sre")));
    let path = "/kc/mcp";
    assert_eq!(
        post(&gw, path, "opaque-sre-1a2b3c4d5e", &call(1, "echo"))
            .await
            .status(),
        200
    );
    assert_eq!(
        post(&gw, path, "opaque-sre-1a2b3c4d5e", &call(2, "delete_repo"))
            .await
            .status(),
        200
    );
    assert_eq!(
        post(&gw, path, "opaque-dev-1a2b3c4d5e", &call(3, "echo"))
            .await
            .status(),
        200
    );
    assert_eq!(listed(&gw, path, "opaque-dev-1a2b3c4d5e").await, ["echo"]);
    let seen = up.seen().len();
    assert_eq!(seen, 4);
    assert_refused(
        post(&gw, path, "opaque-dev-1a2b3c4d5e", &call(4, "delete_repo")).await,
        403,
        "dev",
    )
    .await;
    // A single string is one value: `user sre` is neither `user` nor `sre`.
    assert_refused(
        post(&gw, path, "opaque-odd-1a2b3c4d5e", &call(5, "echo")).await,
        403,
        "odd",
    )
    .await;
    assert_eq!(up.seen().len(), seen, "a refused call reached the upstream");
    let denials = |log: &str| -> Vec<Value> {
        audit_events(log, "authorization")
            .into_iter()
            .filter(|e| e["decision"] == "deny")
            .collect()
    };
    let log = log_when(&gw, |log| denials(log).len() >= 2).await;
    let denied = denials(&log);
    assert_eq!(denied[0]["subject"], "alice", "the mapped subject");
    assert_eq!(denied[0]["rule"], "claims:/realm_access/roles");
    assert_eq!(denied[1]["rule"], "scopes");
}

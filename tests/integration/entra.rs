//! An in-process Microsoft Entra ID tenant on loopback for the on-behalf-of tests, shaped
//! as Microsoft documents it ("Microsoft identity platform and OAuth 2.0 On-Behalf-Of
//! flow", "certificate credentials", "claims challenges", the AADSTS error reference):
//!
//! - an issuer `{base}/{tenant}/v2.0` with its OpenID configuration, a JWKS at
//!   `{base}/{tenant}/discovery/v2.0/keys`, a token endpoint at
//!   `{base}/{tenant}/oauth2/v2.0/token`;
//! - v2 access tokens for the gateway's API (`typ: JWT`, RS256, `aud` = the gateway's
//!   application id URI, `scp`, `oid`, `tid`, `azp`, `ver: 2.0`): [`Entra::user_token`];
//! - the token endpoint runs the on-behalf-of grant only, exactly: a POST form with
//!   `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`, `client_id`,
//!   `client_secret` or `client_assertion_type` + `client_assertion` (RS256/PS256,
//!   naming a registered certificate by `x5t#S256` or `x5t`, `aud` = the token endpoint,
//!   `iss` = `sub` = the client, unexpired, `jti` not seen before), `assertion` (a token
//!   this tenant signed, unexpired, whose `aud` is the gateway's application),
//!   `scope` (space-separated permissions of the upstream API, or its `/.default`) and
//!   `requested_token_use=on_behalf_of`. No other field, no field twice, no
//!   `Authorization` header. Anything else is refused as Entra refuses it: `error`,
//!   `error_description` starting `AADSTS<code>:`, `error_codes`, `timestamp`,
//!   `trace_id`, `correlation_id`, `error_uri`.
//! - the answer: `token_type: Bearer`, `scope` (the granted permissions, full URIs, never
//!   `.default`), `expires_in`, `ext_expires_in`, `access_token` (a v2 token for the
//!   upstream API with the same `oid`), and a `refresh_token` when `offline_access` was
//!   asked for.
//!
//! Test controls: per-user conditional access (`interaction_required`, AADSTS50079, with a
//! `claims` challenge) and missing consent (`invalid_grant`, AADSTS65001), a canned
//! answer, a delay, an outage switch (503), the issued tokens' lifetime, counters and a
//! record of the last form. The server stops when the [`Entra`] is dropped.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use rsa::sha2::{Digest, Sha256};
use rsa::traits::PublicKeyParts;
use rsa::{Pkcs1v15Sign, Pss, RsaPrivateKey, RsaPublicKey};
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::idp::{fresh_rsa_key, unix_now, CLIENT_ASSERTION_TYPE};

/// The tenant (directory) id.
pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
/// The gateway's application (the on-behalf-of client, Entra's "middle tier").
pub const GATEWAY_APP: &str = "6731de76-14a6-49ae-97bc-6eba6914391e";
pub const GATEWAY_SECRET: &str = "Qx~8Q~obo.gateway-secret_value";
/// The MCP client application that signed the user in.
pub const CLIENT_APP: &str = "c44b4083-3bb0-49c1-b47d-974e53cbdf3c";
/// The upstream API's application id URI and the delegated permissions it exposes.
pub const UPSTREAM_API: &str = "api://upstream-mcp";
pub const UPSTREAM_PERMISSIONS: [&str; 2] = ["tools.read", "tools.echo"];
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The conditional-access claims challenge of [`Entra::require_mfa`], as Entra sends it.
pub const MFA_CLAIMS: &str = r#"{"access_token":{"capolids":{"essential":true,"values":["9ab03e19-ed42-4168-b6b7-7001fb3e933a"]}}}"#;

const KID: &str = "nOo3ZDrODXEK1jKWhXslHR_KXEg";
const DEFAULT_LIFETIME: u64 = 3599;
/// The fields of the grant; anything else is refused.
const GRANT_FIELDS: [&str; 8] = [
    "grant_type",
    "client_id",
    "client_secret",
    "client_assertion_type",
    "client_assertion",
    "assertion",
    "scope",
    "requested_token_use",
];

/// A running tenant. Stops when dropped.
pub struct Entra {
    pub issuer: String,
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
}

struct Shared {
    issuer: String,
    token_endpoint: String,
    /// The gateway's application id URI: the `aud` of tokens for the gateway.
    gateway_audience: String,
    key: RsaPrivateKey,
    /// Client secrets by client id.
    secrets: Mutex<HashMap<String, String>>,
    /// Certificate credentials: (client id, `x5t#S256` or `x5t`) → public key.
    certificates: Mutex<HashMap<(String, String), RsaPublicKey>>,
    seen_jti: Mutex<HashSet<String>>,
    /// Users (by `oid`) that conditional access stops, and that have not consented.
    mfa_required: Mutex<HashSet<String>>,
    not_consented: Mutex<HashSet<String>>,
    lifetime: AtomicU64,
    requests: AtomicUsize,
    last_form: Mutex<Option<Vec<(String, String)>>>,
    last_headers: Mutex<Option<HeaderMap>>,
    issued: Mutex<Vec<String>>,
    canned: Mutex<Option<(u16, String)>>,
    delay: Mutex<Duration>,
    down: AtomicBool,
}

impl Entra {
    /// A tenant whose tokens for the gateway carry `gateway_audience` (the gateway's
    /// application id URI: the route's `public_url`).
    pub async fn start(gateway_audience: &str) -> Entra {
        let key = tokio::task::spawn_blocking(fresh_rsa_key)
            .await
            .expect("RSA key");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind entra");
        let addr = listener.local_addr().expect("entra addr");
        let base = format!("http://{addr}/{TENANT}");
        let shared = Arc::new(Shared {
            issuer: format!("{base}/v2.0"),
            token_endpoint: format!("{base}/oauth2/v2.0/token"),
            gateway_audience: gateway_audience.to_string(),
            key,
            secrets: Mutex::new(HashMap::from([(
                GATEWAY_APP.to_string(),
                GATEWAY_SECRET.to_string(),
            )])),
            certificates: Mutex::default(),
            seen_jti: Mutex::default(),
            mfa_required: Mutex::default(),
            not_consented: Mutex::default(),
            lifetime: AtomicU64::new(DEFAULT_LIFETIME),
            requests: AtomicUsize::new(0),
            last_form: Mutex::default(),
            last_headers: Mutex::default(),
            issued: Mutex::default(),
            canned: Mutex::default(),
            delay: Mutex::default(),
            down: AtomicBool::new(false),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let (shutdown, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Entra {
            issuer: shared.issuer.clone(),
            addr,
            shared,
            shutdown: Some(shutdown),
        }
    }

    pub fn token_endpoint(&self) -> String {
        self.shared.token_endpoint.clone()
    }

    pub fn metadata_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.issuer)
    }

    /// A v2 access token for the gateway's API, for user `oid` (also its `sub`), signed
    /// by this tenant and registered as a caller's token (it must never reach an
    /// upstream). `patch` overlays claims (a null removes one).
    pub fn user_token(&self, oid: &str, patch: Value) -> String {
        let now = unix_now();
        let mut claims = json!({
            "aud": self.shared.gateway_audience,
            "iss": self.issuer,
            "iat": now, "nbf": now, "exp": now + 3600,
            "aio": "AWQAm/8TAAAA",
            "azp": CLIENT_APP, "azpacr": "0",
            "name": oid, "oid": oid, "preferred_username": format!("{oid}@contoso.com"),
            "rh": "0.AXEA", "scp": "mcp.tools", "sub": oid, "tid": TENANT,
            "uti": random_id(), "ver": "2.0",
        });
        if let (Some(base), Some(patch)) = (claims.as_object_mut(), patch.as_object()) {
            for (k, v) in patch {
                if v.is_null() {
                    base.remove(k);
                } else {
                    base.insert(k.clone(), v.clone());
                }
            }
        }
        let token = self.shared.sign(&claims);
        crate::upstream::register_caller_token(&token);
        token
    }

    /// Registers a certificate credential for `client_id`: a new RSA key and its
    /// self-signed certificate, as PEM (key, certificate). Assertions must name it by
    /// the certificate's `x5t#S256` (or `x5t`).
    pub fn register_certificate(&self, client_id: &str) -> (String, String) {
        let private = fresh_rsa_key();
        let key_pem = private
            .to_pkcs8_pem(LineEnding::LF)
            .expect("PKCS#8 PEM")
            .to_string();
        let signer =
            rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(&key_pem, &rcgen::PKCS_RSA_SHA256)
                .expect("rcgen RSA key");
        let cert = rcgen::CertificateParams::new(vec!["drawbridge-obo".to_string()])
            .expect("params")
            .self_signed(&signer)
            .expect("certificate");
        let der = cert.der().to_vec();
        let mut certificates = self.shared.certificates.lock().expect("certificates");
        let public = private.to_public_key();
        let s256 = URL_SAFE_NO_PAD.encode(Sha256::digest(&der));
        let sha1 = URL_SAFE_NO_PAD.encode(ring::digest::digest(
            &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            &der,
        ));
        certificates.insert(
            (client_id.to_string(), format!("S256:{s256}")),
            public.clone(),
        );
        certificates.insert((client_id.to_string(), format!("SHA1:{sha1}")), public);
        (key_pem, cert.pem())
    }

    /// Conditional access stops user `oid` (multi-factor authentication required):
    /// `interaction_required`, AADSTS50079, with [`MFA_CLAIMS`].
    pub fn require_mfa(&self, oid: &str) {
        self.shared
            .mfa_required
            .lock()
            .expect("mfa")
            .insert(oid.to_string());
    }

    /// User `oid` has not consented to the gateway calling the upstream API:
    /// `invalid_grant`, AADSTS65001.
    pub fn withhold_consent(&self, oid: &str) {
        self.shared
            .not_consented
            .lock()
            .expect("consent")
            .insert(oid.to_string());
    }

    /// Every token request is answered `status` with `body` (as JSON, verbatim) after it
    /// was counted and recorded; `None` restores the grant.
    pub fn set_token_response(&self, canned: Option<(u16, String)>) {
        *self.shared.canned.lock().expect("canned") = canned;
    }

    pub fn set_token_delay(&self, delay: Duration) {
        *self.shared.delay.lock().expect("delay") = delay;
    }

    /// While down, every request is answered 503.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    pub fn set_lifetime(&self, secs: u64) {
        self.shared.lifetime.store(secs, Ordering::SeqCst);
    }

    /// Requests that reached the token endpoint, whatever their outcome.
    pub fn token_requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// The last token request's form fields, in order, decoded.
    pub fn last_form(&self) -> Option<Vec<(String, String)>> {
        self.shared.last_form.lock().expect("form").clone()
    }

    /// The last token request's headers.
    pub fn last_headers(&self) -> Option<HeaderMap> {
        self.shared.last_headers.lock().expect("headers").clone()
    }

    /// Every access token the grant issued, in order.
    pub fn issued(&self) -> Vec<String> {
        self.shared.issued.lock().expect("issued").clone()
    }

    /// The JWKS, for checks of the double itself.
    pub fn jwks_url(&self) -> String {
        format!("http://{}/{TENANT}/discovery/v2.0/keys", self.addr)
    }
}

impl Drop for Entra {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

fn random_id() -> String {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).expect("random");
    URL_SAFE_NO_PAD.encode(bytes)
}

fn b64_json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("JSON"))
}

/// The decoded parts of a compact JWS (header, claims, signing input, signature).
fn jws_parts(token: &str) -> Option<(Value, Value, String, Vec<u8>)> {
    let mut pieces = token.split('.');
    let (h, c, s) = (pieces.next()?, pieces.next()?, pieces.next()?);
    if pieces.next().is_some() {
        return None;
    }
    let header = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).ok()?).ok()?;
    let claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(c).ok()?).ok()?;
    Some((
        header,
        claims,
        format!("{h}.{c}"),
        URL_SAFE_NO_PAD.decode(s).ok()?,
    ))
}

fn verifies(key: &RsaPublicKey, alg: &str, input: &str, signature: &[u8]) -> bool {
    let digest = Sha256::digest(input.as_bytes());
    match alg {
        "RS256" => key
            .verify(Pkcs1v15Sign::new::<Sha256>(), &digest, signature)
            .is_ok(),
        "PS256" => key.verify(Pss::new::<Sha256>(), &digest, signature).is_ok(),
        _ => false,
    }
}

/// An Entra error answer.
struct Aadsts {
    status: StatusCode,
    error: &'static str,
    code: u32,
    text: String,
    claims: Option<&'static str>,
}

fn aadsts(status: u16, error: &'static str, code: u32, text: impl Into<String>) -> Aadsts {
    Aadsts {
        status: StatusCode::from_u16(status).expect("status"),
        error,
        code,
        text: text.into(),
        claims: None,
    }
}

fn missing(name: &str) -> Aadsts {
    aadsts(
        400,
        "invalid_request",
        900144,
        format!("The request body must contain the following parameter: '{name}'."),
    )
}

impl IntoResponse for Aadsts {
    fn into_response(self) -> Response {
        let (trace, correlation) = (random_id(), random_id());
        let timestamp = "2026-12-05 11:00:00Z";
        let mut body = json!({
            "error": self.error,
            "error_description": format!(
                "AADSTS{}: {}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}\r\nTimestamp: {timestamp}",
                self.code, self.text
            ),
            "error_codes": [self.code],
            "timestamp": timestamp,
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": format!("https://login.microsoftonline.com/error?code={}", self.code),
        });
        if let Some(claims) = self.claims {
            body["claims"] = claims.into();
        }
        (self.status, Json(body)).into_response()
    }
}

impl Shared {
    fn sign(&self, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64_json(&json!({"typ": "JWT", "alg": "RS256", "kid": KID})),
            b64_json(claims)
        );
        let signature = self
            .key
            .sign(
                Pkcs1v15Sign::new::<Sha256>(),
                &Sha256::digest(input.as_bytes()),
            )
            .expect("RS256");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    fn metadata(&self) -> Value {
        let base = self.issuer.trim_end_matches("/v2.0");
        json!({
            "issuer": self.issuer,
            "authorization_endpoint": format!("{base}/oauth2/v2.0/authorize"),
            "token_endpoint": self.token_endpoint,
            "jwks_uri": format!("{base}/discovery/v2.0/keys"),
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "tenant_region_scope": "EU",
        })
    }

    fn jwks(&self) -> Value {
        let public = self.key.to_public_key();
        json!({"keys": [{
            "kty": "RSA", "use": "sig", "kid": KID, "x5t": KID,
            "n": URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
            "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
            "issuer": self.issuer,
        }]})
    }

    /// The on-behalf-of grant, or Entra's refusal of the request.
    fn grant(&self, headers: &HeaderMap, fields: &[(String, String)]) -> Result<Value, Aadsts> {
        let form_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !form_type.starts_with("application/x-www-form-urlencoded") {
            return Err(aadsts(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'grant_type'.",
            ));
        }
        if headers.contains_key(header::AUTHORIZATION) {
            return Err(aadsts(400, "invalid_request", 90100, "The on-behalf-of request authenticates the client in the body; no Authorization header."));
        }
        let mut names = HashSet::new();
        for (name, _) in fields {
            if !names.insert(name.as_str()) {
                return Err(aadsts(400, "invalid_request", 9000411, format!("The request is not properly formatted. The parameter '{name}' is duplicated.")));
            }
            if name == "resource" {
                return Err(aadsts(
                    400,
                    "invalid_request",
                    901002,
                    "The 'resource' request parameter is not supported.",
                ));
            }
            if !GRANT_FIELDS.contains(&name.as_str()) {
                return Err(aadsts(
                    400,
                    "invalid_request",
                    90100,
                    format!("The parameter '{name}' is not part of the on-behalf-of request."),
                ));
            }
        }
        let get = |name: &str| {
            fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .filter(|v| !v.is_empty())
        };
        match get("grant_type") {
            None => return Err(missing("grant_type")),
            Some(JWT_BEARER_GRANT) => {}
            Some(_) => {
                return Err(aadsts(
                    400,
                    "unsupported_grant_type",
                    70003,
                    "The app requested an unsupported grant type.",
                ))
            }
        }
        let client_id = get("client_id").ok_or_else(|| missing("client_id"))?;
        self.authenticate(
            client_id,
            get("client_secret"),
            get("client_assertion_type"),
            get("client_assertion"),
        )?;
        let assertion = get("assertion").ok_or_else(|| missing("assertion"))?;
        let scope = get("scope").ok_or_else(|| missing("scope"))?;
        match get("requested_token_use") {
            None => return Err(missing("requested_token_use")),
            Some("on_behalf_of") => {}
            Some(_) => {
                return Err(aadsts(
                    400,
                    "invalid_request",
                    90100,
                    "requested_token_use must be on_behalf_of.",
                ))
            }
        }
        let user = self.check_assertion(client_id, assertion)?;
        let granted = granted_scopes(scope)?;
        let oid = user["oid"].as_str().unwrap_or_default().to_string();
        if self.not_consented.lock().expect("consent").contains(&oid) {
            return Err(aadsts(400, "invalid_grant", 65001, format!("The user or administrator has not consented to use the application with ID '{client_id}'. Send an interactive authorization request for this user and resource.")));
        }
        if self.mfa_required.lock().expect("mfa").contains(&oid) {
            let mut refusal = aadsts(400, "interaction_required", 50079, "Due to a configuration change made by your administrator, or because you moved to a new location, you must enroll in multifactor authentication to access 'api://upstream-mcp'.");
            refusal.claims = Some(MFA_CLAIMS);
            return Err(refusal);
        }
        let lifetime = self.lifetime.load(Ordering::SeqCst);
        let now = unix_now();
        let permissions: Vec<&str> = granted
            .iter()
            .filter_map(|s| s.strip_prefix(&format!("{UPSTREAM_API}/")))
            .collect();
        let token = self.sign(&json!({
            "aud": UPSTREAM_API, "iss": self.issuer,
            "iat": now, "nbf": now, "exp": now + lifetime,
            "azp": client_id, "azpacr": if get("client_secret").is_some() { "1" } else { "2" },
            "oid": oid, "sub": format!("obo-{oid}"), "tid": TENANT,
            "scp": permissions.join(" "), "uti": random_id(), "ver": "2.0",
        }));
        self.issued.lock().expect("issued").push(token.clone());
        let mut answer = json!({
            "token_type": "Bearer",
            "scope": granted.join(" "),
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": token,
        });
        if scope.split(' ').any(|s| s == "offline_access") {
            answer["refresh_token"] = format!("0.AXEA-refresh-{}", random_id()).into();
        }
        Ok(answer)
    }

    /// Exactly one credential: the client's secret, or an assertion signed with a
    /// registered certificate's key.
    fn authenticate(
        &self,
        client_id: &str,
        secret: Option<&str>,
        assertion_type: Option<&str>,
        assertion: Option<&str>,
    ) -> Result<(), Aadsts> {
        let known = self
            .secrets
            .lock()
            .expect("secrets")
            .contains_key(client_id)
            || self
                .certificates
                .lock()
                .expect("certificates")
                .keys()
                .any(|(id, _)| id == client_id);
        if !known {
            return Err(aadsts(
                400,
                "unauthorized_client",
                700016,
                format!(
                    "Application with identifier '{client_id}' was not found in the directory."
                ),
            ));
        }
        match (secret, assertion_type, assertion) {
            (Some(secret), None, None) => {
                let expected = self.secrets.lock().expect("secrets").get(client_id).cloned();
                if expected.as_deref() == Some(secret) {
                    Ok(())
                } else {
                    Err(aadsts(401, "invalid_client", 7000215, "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID."))
                }
            }
            (None, Some(CLIENT_ASSERTION_TYPE), Some(assertion)) => {
                self.check_client_assertion(client_id, assertion)
            }
            (None, Some(_), Some(_)) => Err(aadsts(400, "invalid_request", 90100, "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer.")),
            (None, None, None) => Err(aadsts(401, "invalid_client", 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")),
            _ => Err(aadsts(400, "invalid_request", 90100, "Give either client_secret or client_assertion_type and client_assertion.")),
        }
    }

    fn check_client_assertion(&self, client_id: &str, assertion: &str) -> Result<(), Aadsts> {
        let invalid = |why: &str| {
            aadsts(
                401,
                "invalid_client",
                700027,
                format!("Client assertion failed signature validation. [Reason - {why}]"),
            )
        };
        let (header, claims, input, signature) =
            jws_parts(assertion).ok_or_else(|| invalid("not a JWT"))?;
        if header["typ"] != "JWT" {
            return Err(invalid("typ must be JWT"));
        }
        let lookup = match (header["x5t#S256"].as_str(), header["x5t"].as_str()) {
            (Some(t), _) => format!("S256:{t}"),
            (None, Some(t)) => format!("SHA1:{t}"),
            (None, None) => return Err(invalid("The key was not found: no x5t#S256 or x5t.")),
        };
        let key = self
            .certificates
            .lock()
            .expect("certificates")
            .get(&(client_id.to_string(), lookup))
            .cloned()
            .ok_or_else(|| invalid("The key was not found."))?;
        if !verifies(
            &key,
            header["alg"].as_str().unwrap_or_default(),
            &input,
            &signature,
        ) {
            return Err(invalid("The signature does not verify."));
        }
        if claims["aud"] != self.token_endpoint.as_str() {
            return Err(aadsts(
                401,
                "invalid_client",
                700027,
                "Client assertion audience claim does not match Realm issuer.",
            ));
        }
        if claims["iss"] != client_id || claims["sub"] != client_id {
            return Err(aadsts(
                401,
                "invalid_client",
                700021,
                "Client assertion application identifier doesn't match 'client_id' parameter.",
            ));
        }
        let now = unix_now();
        let exp = claims["exp"].as_u64().unwrap_or(0);
        let nbf = claims["nbf"].as_u64().unwrap_or(0);
        if exp <= now || nbf > now + 300 {
            return Err(aadsts(
                401,
                "invalid_client",
                700024,
                "Client assertion is not within its valid time range.",
            ));
        }
        let jti = claims["jti"].as_str().unwrap_or_default().to_string();
        if jti.is_empty() || !self.seen_jti.lock().expect("jti").insert(jti) {
            return Err(aadsts(
                401,
                "invalid_client",
                700027,
                "Client assertion contains an invalid or replayed jti.",
            ));
        }
        Ok(())
    }

    /// The user's token: signed here, unexpired, for the client asking. Its claims.
    fn check_assertion(&self, client_id: &str, assertion: &str) -> Result<Value, Aadsts> {
        let failed = |why: &str| {
            aadsts(
                400,
                "invalid_grant",
                50013,
                format!("Assertion failed signature validation. [Reason - {why}]"),
            )
        };
        let (header, claims, input, signature) =
            jws_parts(assertion).ok_or_else(|| failed("not a JWT"))?;
        if header["kid"] != KID
            || !verifies(
                &self.key.to_public_key(),
                header["alg"].as_str().unwrap_or_default(),
                &input,
                &signature,
            )
        {
            return Err(failed("The key was not found."));
        }
        if claims["iss"] != self.issuer.as_str() {
            return Err(failed("The issuer is not this tenant."));
        }
        if claims["aud"] != self.gateway_audience.as_str() && claims["aud"] != client_id {
            return Err(aadsts(
                400,
                "invalid_grant",
                50013,
                "Assertion audience does not match the Client app presenting the assertion.",
            ));
        }
        if claims["exp"].as_u64().unwrap_or(0) <= unix_now() {
            return Err(aadsts(
                400,
                "invalid_grant",
                500133,
                "Assertion is not within its valid time range.",
            ));
        }
        Ok(claims)
    }
}

/// The scopes granted for a requested `scope`: the upstream API's permissions it names,
/// all of them for `/.default` (consent is for all); `offline_access` passes through
/// silently. Anything else is an invalid scope.
fn granted_scopes(scope: &str) -> Result<Vec<String>, Aadsts> {
    let invalid = || {
        aadsts(
            400,
            "invalid_scope",
            70011,
            "The provided value for the input parameter 'scope' is not valid.",
        )
    };
    let mut granted = Vec::new();
    for s in scope.split(' ') {
        if s == "offline_access" {
            continue;
        }
        let rest = s
            .strip_prefix(&format!("{UPSTREAM_API}/"))
            .ok_or_else(invalid)?;
        if rest == ".default" {
            granted.extend(
                UPSTREAM_PERMISSIONS
                    .iter()
                    .map(|p| format!("{UPSTREAM_API}/{p}")),
            );
        } else if UPSTREAM_PERMISSIONS.contains(&rest) {
            granted.push(s.to_string());
        } else {
            return Err(invalid());
        }
    }
    if granted.is_empty() {
        return Err(invalid());
    }
    granted.dedup();
    Ok(granted)
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let base = format!("/{TENANT}");
    let path = parts.uri.path().strip_prefix(&base).unwrap_or_default();
    let is_token = path == "/oauth2/v2.0/token";
    let fields = if is_token && parts.method == Method::POST {
        shared.requests.fetch_add(1, Ordering::SeqCst);
        let bytes = axum::body::to_bytes(body, 1 << 20)
            .await
            .unwrap_or_default();
        let fields: Vec<(String, String)> = url::form_urlencoded::parse(&bytes)
            .map(|(n, v)| (n.into_owned(), v.into_owned()))
            .collect();
        *shared.last_form.lock().expect("form") = Some(fields.clone());
        *shared.last_headers.lock().expect("headers") = Some(parts.headers.clone());
        Some(fields)
    } else {
        None
    };
    if shared.down.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "entra is down").into_response();
    }
    match (path, parts.method, fields) {
        ("/v2.0/.well-known/openid-configuration", Method::GET, _) => {
            Json(shared.metadata()).into_response()
        }
        ("/discovery/v2.0/keys", Method::GET, _) => Json(shared.jwks()).into_response(),
        ("/oauth2/v2.0/token", Method::POST, Some(fields)) => {
            let delay = *shared.delay.lock().expect("delay");
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if let Some((status, body)) = shared.canned.lock().expect("canned").clone() {
                return Response::builder()
                    .status(status)
                    .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
                    .body(Body::from(body))
                    .unwrap_or_default();
            }
            match shared.grant(&parts.headers, &fields) {
                Ok(answer) => (
                    [(header::CACHE_CONTROL, "no-store, no-cache")],
                    Json(answer),
                )
                    .into_response(),
                Err(refusal) => refusal.into_response(),
            }
        }
        ("/oauth2/v2.0/token", _, _) => aadsts(
            405,
            "invalid_request",
            900561,
            "The endpoint only accepts POST requests.",
        )
        .into_response(),
        _ => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

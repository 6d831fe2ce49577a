//! An in-process OAuth 2.1 authorization server on loopback, for the auth tests. It owns
//! everything a resource server asks of an IdP: discovery metadata (OIDC, or RFC 8414
//! only), a JWKS, RFC 7662 introspection of registered opaque tokens, and the tokens
//! themselves — well-formed ones for every algorithm drawbridge accepts, and deliberately
//! bad ones (`alg: none`, HS256 keyed with the public key, a key not in the JWKS).
//! Test controls: key rotation, an outage switch (every request answers 503), the JWKS
//! `Cache-Control` max-age, and counters of fetches.
//!
//! It does not run login, code or token-exchange flows: `/authorize` and `/token` are
//! advertised in the metadata but refuse every request.
//!
//! Keys. RSA kid `rsa-1` signs both RS256 and PS256, so its JWK has no `alg` member.
//! EC P-256 kid `ec-1` signs ES256 and Ed25519 kid `ed-1` signs EdDSA. Every key is unique
//! within the test process, so two IdPs never vouch for each other's tokens. RSA keys are
//! slow to generate, so a background thread keeps a small stock ready (see [`fresh_rsa_key`]).
//!
//! Layout under the issuer URL: `{issuer}/jwks`, `{issuer}/introspect`, `{issuer}/token`,
//! `{issuer}/authorize`; metadata at `{issuer}/.well-known/openid-configuration` for
//! [`Idp::start`], at `/.well-known/oauth-authorization-server{issuer path}` for
//! [`Idp::start_oauth_only`]. Each IdP serves exactly one of the two documents.
//! The server stops when the [`Idp`] is dropped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use rsa::pkcs8::{EncodePublicKey, LineEnding};
use rsa::sha2::{Digest, Sha256};
use rsa::traits::PublicKeyParts;
use rsa::{Pkcs1v15Sign, Pss, RsaPrivateKey};
use serde_json::{json, Value};
use tokio::sync::oneshot;

/// The client drawbridge must authenticate as (HTTP Basic) to call `/introspect`.
pub const INTROSPECTION_CLIENT_ID: &str = "drawbridge";
pub const INTROSPECTION_CLIENT_SECRET: &str = "introspect-secret";

/// Issuer path used by [`Idp::start_oauth_only`].
pub const OAUTH_ONLY_ISSUER_PATH: &str = "/realms/corp";

/// The JWS algorithms the IdP signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::upper_case_acronyms)]
pub enum Alg {
    RS256,
    PS256,
    ES256,
    EdDSA,
}

impl Alg {
    pub const ALL: [Alg; 4] = [Alg::RS256, Alg::PS256, Alg::ES256, Alg::EdDSA];

    /// The JOSE `alg` value.
    pub fn name(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::PS256 => "PS256",
            Alg::ES256 => "ES256",
            Alg::EdDSA => "EdDSA",
        }
    }
}

/// A running authorization server. Stops when dropped.
pub struct Idp {
    /// `http://127.0.0.1:PORT`, or with [`OAUTH_ONLY_ISSUER_PATH`] for `start_oauth_only`.
    pub issuer: String,
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    /// An RSA key that is never published: signs `mint_with_foreign_key`.
    foreign_key: OnceLock<RsaPrivateKey>,
    shutdown: Option<oneshot::Sender<()>>,
}

struct RsaKey {
    kid: String,
    key: RsaPrivateKey,
}

struct Keys {
    /// Published RSA keys; the last one is current for RS256 and PS256.
    rsa: Vec<Arc<RsaKey>>,
    /// How many RSA keys this IdP has had: names the next kid.
    rsa_generation: usize,
    ec: EcdsaKeyPair,
    ed: Ed25519KeyPair,
}

impl Keys {
    fn current_rsa(&self) -> Arc<RsaKey> {
        self.rsa
            .last()
            .expect("an RSA key is always published")
            .clone()
    }
}

struct Shared {
    issuer: String,
    /// The issuer's path ("" or "/realms/corp"): endpoints live under it.
    issuer_path: String,
    oauth_only: bool,
    keys: Mutex<Keys>,
    opaque: Mutex<HashMap<String, Value>>,
    jwks_max_age: Mutex<Option<u64>>,
    down: AtomicBool,
    jwks_fetches: AtomicUsize,
    discovery_fetches: AtomicUsize,
    introspections: AtomicUsize,
}

impl Idp {
    /// An OIDC provider at `http://127.0.0.1:PORT`: metadata at
    /// `/.well-known/openid-configuration` only.
    pub async fn start() -> Idp {
        Self::launch("", false).await
    }

    /// A plain OAuth authorization server whose issuer has a path
    /// (`http://127.0.0.1:PORT/realms/corp`): metadata only at the RFC 8414 location
    /// `/.well-known/oauth-authorization-server/realms/corp`; the OIDC document 404s.
    pub async fn start_oauth_only() -> Idp {
        Self::launch(OAUTH_ONLY_ISSUER_PATH, true).await
    }

    async fn launch(issuer_path: &str, oauth_only: bool) -> Idp {
        let rsa = tokio::task::spawn_blocking(fresh_rsa_key)
            .await
            .expect("RSA key generation");
        let rng = SystemRandom::new();
        let ec_pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("generate EC key");
        let ec =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, ec_pkcs8.as_ref(), &rng)
                .expect("load EC key");
        let ed_pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("generate Ed25519 key");
        let ed = Ed25519KeyPair::from_pkcs8(ed_pkcs8.as_ref()).expect("load Ed25519 key");

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind idp");
        let addr = listener.local_addr().expect("idp addr");
        let issuer = format!("http://{addr}{issuer_path}");
        let shared = Arc::new(Shared {
            issuer: issuer.clone(),
            issuer_path: issuer_path.to_string(),
            oauth_only,
            keys: Mutex::new(Keys {
                rsa: vec![Arc::new(RsaKey {
                    kid: "rsa-1".into(),
                    key: rsa,
                })],
                rsa_generation: 1,
                ec,
                ed,
            }),
            opaque: Mutex::default(),
            jwks_max_age: Mutex::default(),
            down: AtomicBool::new(false),
            jwks_fetches: AtomicUsize::new(0),
            discovery_fetches: AtomicUsize::new(0),
            introspections: AtomicUsize::new(0),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let (shutdown, stopped) = oneshot::channel::<()>();
        // Graceful shutdown closes idle keep-alive connections too, so a dropped IdP is
        // really gone rather than still answering on a pooled connection.
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Idp {
            issuer,
            addr,
            shared,
            foreign_key: OnceLock::new(),
            shutdown: Some(shutdown),
        }
    }

    pub fn jwks_url(&self) -> String {
        format!("{}/jwks", self.issuer)
    }

    /// The URL of the one metadata document this IdP serves.
    pub fn metadata_url(&self) -> String {
        let origin = format!("http://{}", self.addr);
        if self.shared.oauth_only {
            format!(
                "{origin}/.well-known/oauth-authorization-server{}",
                self.shared.issuer_path
            )
        } else {
            format!("{}/.well-known/openid-configuration", self.issuer)
        }
    }

    pub fn introspection_url(&self) -> String {
        format!("{}/introspect", self.issuer)
    }

    /// Standard access-token claims, valid for five minutes from now.
    pub fn claims(&self, aud: &str, scope: &str) -> Value {
        let now = unix_now();
        json!({
            "iss": self.issuer,
            "sub": "alice",
            "aud": aud,
            "client_id": "agent-client",
            "scope": scope,
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "jti": random_id(),
        })
    }

    /// Signs `claims` with the current key for `alg`; header `{alg, typ: "at+jwt", kid}`.
    pub fn mint(&self, alg: Alg, claims: &Value) -> String {
        self.mint_with_header(alg, &json!({}), claims)
    }

    /// Like [`Idp::mint`], with `header`'s members merged over the default header; a
    /// `null` member removes that member. The signature is always made with the key for
    /// `alg`, whatever the merged header says — so `{"alg": "ES256"}` with `Alg::RS256`
    /// gives a header that lies about its algorithm.
    pub fn mint_with_header(&self, alg: Alg, header: &Value, claims: &Value) -> String {
        let keys = self.shared.keys.lock().expect("keys");
        let kid = match alg {
            Alg::RS256 | Alg::PS256 => keys.current_rsa().kid.clone(),
            Alg::ES256 => "ec-1".to_string(),
            Alg::EdDSA => "ed-1".to_string(),
        };
        let mut full = json!({ "alg": alg.name(), "typ": "at+jwt", "kid": kid });
        merge(&mut full, header);
        let input = signing_input(&full, claims);
        let signature = match alg {
            Alg::RS256 => sign_rs256(&keys.current_rsa().key, &input),
            Alg::PS256 => keys
                .current_rsa()
                .key
                .sign_with_rng(
                    &mut rand::thread_rng(),
                    Pss::new::<Sha256>(),
                    &Sha256::digest(input.as_bytes()),
                )
                .expect("PS256 signature"),
            Alg::ES256 => keys
                .ec
                .sign(&SystemRandom::new(), input.as_bytes())
                .expect("ES256 signature")
                .as_ref()
                .to_vec(),
            Alg::EdDSA => keys.ed.sign(input.as_bytes()).as_ref().to_vec(),
        };
        compact(&input, &signature)
    }

    /// An unsigned token: header `{"alg": "none", "kid": "rsa-1"}`, empty signature.
    pub fn mint_alg_none(&self, claims: &Value) -> String {
        let input = signing_input(&json!({ "alg": "none", "kid": "rsa-1" }), claims);
        compact(&input, &[])
    }

    /// HS256 keyed with the current RSA public key as SubjectPublicKeyInfo PEM text
    /// (`-----BEGIN PUBLIC KEY-----`, LF line endings, trailing newline) — the classic
    /// algorithm-confusion forgery. Header `{alg: "HS256", typ: "at+jwt", kid: <rsa kid>}`.
    pub fn mint_hs256_with_public_key_pem(&self, claims: &Value) -> String {
        let (kid, public) = self.current_rsa_public();
        let pem = public
            .to_public_key_pem(LineEnding::LF)
            .expect("public key PEM");
        mint_hs256(&kid, pem.as_bytes(), claims)
    }

    /// Like [`Idp::mint_hs256_with_public_key_pem`], keyed with the SPKI DER bytes.
    pub fn mint_hs256_with_public_key_der(&self, claims: &Value) -> String {
        let (kid, public) = self.current_rsa_public();
        let der = public.to_public_key_der().expect("public key DER");
        mint_hs256(&kid, der.as_bytes(), claims)
    }

    /// RS256 by an RSA key that is not (and never will be) in this IdP's JWKS; header kid
    /// is `kid`, so it can name a published key or an unknown one.
    pub fn mint_with_foreign_key(&self, kid: &str, claims: &Value) -> String {
        let key = self.foreign_key.get_or_init(fresh_rsa_key);
        let input = signing_input(
            &json!({ "alg": "RS256", "typ": "at+jwt", "kid": kid }),
            claims,
        );
        compact(&input, &sign_rs256(key, &input))
    }

    /// Replaces the current RSA key with a new one named `rsa-N` (N = 2, 3, …) and
    /// returns its kid. `keep_old` leaves the previously published RSA keys in the JWKS;
    /// otherwise the JWKS holds only the new one. May block briefly if no spare RSA key
    /// is ready yet.
    pub fn rotate_rsa(&self, keep_old: bool) -> String {
        let key = fresh_rsa_key();
        let mut keys = self.shared.keys.lock().expect("keys");
        keys.rsa_generation += 1;
        let kid = format!("rsa-{}", keys.rsa_generation);
        if !keep_old {
            keys.rsa.clear();
        }
        keys.rsa.push(Arc::new(RsaKey {
            kid: kid.clone(),
            key,
        }));
        kid
    }

    /// The kid that RS256 and PS256 tokens carry now.
    pub fn current_rsa_kid(&self) -> String {
        self.shared
            .keys
            .lock()
            .expect("keys")
            .current_rsa()
            .kid
            .clone()
    }

    /// While down, every request (any path) answers 503; the counters still count.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// Requests that reached `/jwks`, including those answered 503 while down.
    pub fn jwks_fetches(&self) -> usize {
        self.shared.jwks_fetches.load(Ordering::SeqCst)
    }

    /// Requests for the metadata document this IdP serves, including those answered 503
    /// while down. Probes of the document it does not serve are not counted.
    pub fn discovery_fetches(&self) -> usize {
        self.shared.discovery_fetches.load(Ordering::SeqCst)
    }

    /// `Cache-Control: max-age=N` on JWKS responses; `None` (the default) sends no
    /// `Cache-Control` at all.
    pub fn set_jwks_max_age(&self, secs: Option<u64>) {
        *self.shared.jwks_max_age.lock().expect("max age") = secs;
    }

    /// Makes `/introspect` answer `response` verbatim for `token` (include
    /// `"active": true` yourself). Unregistered tokens get `{"active": false}`.
    pub fn register_opaque(&self, token: &str, response: Value) {
        self.shared
            .opaque
            .lock()
            .expect("opaque")
            .insert(token.to_string(), response);
    }

    /// Requests that reached `/introspect`, authenticated or not.
    pub fn introspections(&self) -> usize {
        self.shared.introspections.load(Ordering::SeqCst)
    }

    fn current_rsa_public(&self) -> (String, rsa::RsaPublicKey) {
        let current = self.shared.keys.lock().expect("keys").current_rsa();
        (current.kid.clone(), current.key.to_public_key())
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

// ---- RSA key stock ---------------------------------------------------------------------

/// Spare RSA keys generated ahead of need. Generating a 2048-bit key takes long enough
/// (see the self-test's timing line) that generating one per test on demand would
/// dominate the auth tests.
static RSA_STOCK: Mutex<Vec<RsaPrivateKey>> = Mutex::new(Vec::new());
static RSA_REFILLING: AtomicBool = AtomicBool::new(false);
/// Keys kept ready: one IdP start, one rotation and one foreign key.
const RSA_STOCK_TARGET: usize = 3;

/// A 2048-bit RSA key no one else in this process has: from the stock if one is ready,
/// generated here otherwise. Either way the stock is topped up in the background.
pub fn fresh_rsa_key() -> RsaPrivateKey {
    let spare = RSA_STOCK.lock().expect("rsa stock").pop();
    refill_rsa_stock();
    spare.unwrap_or_else(generate_rsa_key)
}

pub fn generate_rsa_key() -> RsaPrivateKey {
    RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("generate RSA key")
}

/// Starts one background thread (at most) that fills the stock to its target.
fn refill_rsa_stock() {
    if RSA_REFILLING.swap(true, Ordering::SeqCst) {
        return;
    }
    std::thread::spawn(|| loop {
        if RSA_STOCK.lock().expect("rsa stock").len() >= RSA_STOCK_TARGET {
            RSA_REFILLING.store(false, Ordering::SeqCst);
            return;
        }
        let key = generate_rsa_key();
        RSA_STOCK.lock().expect("rsa stock").push(key);
    });
}

// ---- JWS -------------------------------------------------------------------------------

fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn signing_input(header: &Value, claims: &Value) -> String {
    let header = serde_json::to_vec(header).expect("header JSON");
    let claims = serde_json::to_vec(claims).expect("claims JSON");
    format!("{}.{}", b64url(&header), b64url(&claims))
}

fn compact(signing_input: &str, signature: &[u8]) -> String {
    format!("{signing_input}.{}", b64url(signature))
}

fn sign_rs256(key: &RsaPrivateKey, input: &str) -> Vec<u8> {
    key.sign(
        Pkcs1v15Sign::new::<Sha256>(),
        &Sha256::digest(input.as_bytes()),
    )
    .expect("RS256 signature")
}

fn mint_hs256(kid: &str, secret: &[u8], claims: &Value) -> String {
    let input = signing_input(
        &json!({ "alg": "HS256", "typ": "at+jwt", "kid": kid }),
        claims,
    );
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    compact(&input, ring::hmac::sign(&key, input.as_bytes()).as_ref())
}

/// Overlays `patch`'s members on `base`; a null member removes the key.
fn merge(base: &mut Value, patch: &Value) {
    let (Some(base), Some(patch)) = (base.as_object_mut(), patch.as_object()) else {
        panic!("JWT headers are JSON objects");
    };
    for (name, value) in patch {
        if value.is_null() {
            base.remove(name);
        } else {
            base.insert(name.clone(), value.clone());
        }
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

fn random_id() -> String {
    let mut bytes = [0u8; 16];
    SystemRandom::new().fill(&mut bytes).expect("random bytes");
    b64url(&bytes)
}

// ---- HTTP ------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Metadata,
    Jwks,
    Introspect,
    Token,
    Authorize,
}

impl Shared {
    fn endpoint(&self, path: &str) -> Option<Endpoint> {
        let metadata = if self.oauth_only {
            format!(
                "/.well-known/oauth-authorization-server{}",
                self.issuer_path
            )
        } else {
            format!("{}/.well-known/openid-configuration", self.issuer_path)
        };
        if path == metadata {
            return Some(Endpoint::Metadata);
        }
        match path.strip_prefix(self.issuer_path.as_str())? {
            "/jwks" => Some(Endpoint::Jwks),
            "/introspect" => Some(Endpoint::Introspect),
            "/token" => Some(Endpoint::Token),
            "/authorize" => Some(Endpoint::Authorize),
            _ => None,
        }
    }

    fn metadata(&self) -> Value {
        let issuer = &self.issuer;
        let mut doc = json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/authorize"),
            "token_endpoint": format!("{issuer}/token"),
            "jwks_uri": format!("{issuer}/jwks"),
            "introspection_endpoint": format!("{issuer}/introspect"),
            "response_types_supported": ["code"],
            "grant_types_supported": [
                "authorization_code",
                "client_credentials",
                "refresh_token",
                "urn:ietf:params:oauth:grant-type:token-exchange"
            ],
            "scopes_supported": [
                "openid", "mcp:tools", "tools:echo", "tools:read", "resources:read", "prompts:read"
            ],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic"],
            "code_challenge_methods_supported": ["S256"],
        });
        if !self.oauth_only {
            doc["subject_types_supported"] = json!(["public"]);
            doc["id_token_signing_alg_values_supported"] = json!(["RS256"]);
        }
        doc
    }

    fn jwks(&self) -> Value {
        let keys = self.keys.lock().expect("keys");
        let mut jwks: Vec<Value> = keys
            .rsa
            .iter()
            .map(|k| {
                json!({
                    "kty": "RSA",
                    "kid": k.kid,
                    "use": "sig",
                    "n": b64url(&k.key.n().to_bytes_be()),
                    "e": b64url(&k.key.e().to_bytes_be()),
                })
            })
            .collect();
        // ring's P-256 public key is the uncompressed point 0x04 || x || y.
        let point = keys.ec.public_key().as_ref();
        jwks.push(json!({
            "kty": "EC", "crv": "P-256", "kid": "ec-1", "use": "sig",
            "x": b64url(&point[1..33]),
            "y": b64url(&point[33..65]),
        }));
        jwks.push(json!({
            "kty": "OKP", "crv": "Ed25519", "kid": "ed-1", "use": "sig",
            "x": b64url(keys.ed.public_key().as_ref()),
        }));
        json!({ "keys": jwks })
    }

    fn introspect(&self, headers: &HeaderMap, form: &[u8]) -> Response {
        if !has_introspection_client(headers) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Basic realm=\"idp\"")],
                Json(json!({ "error": "invalid_client" })),
            )
                .into_response();
        }
        let token = url::form_urlencoded::parse(form)
            .find(|(name, _)| name == "token")
            .map(|(_, value)| value.into_owned());
        let Some(token) = token else {
            return error(StatusCode::BAD_REQUEST, "invalid_request");
        };
        let answer = self.opaque.lock().expect("opaque").get(&token).cloned();
        Json(answer.unwrap_or_else(|| json!({ "active": false }))).into_response()
    }
}

/// HTTP Basic with exactly the expected client (compared as sent: the test credentials
/// need no form-encoding).
fn has_introspection_client(headers: &HeaderMap) -> bool {
    let expected = format!("{INTROSPECTION_CLIENT_ID}:{INTROSPECTION_CLIENT_SECRET}");
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b64| STANDARD.decode(b64.trim()).ok())
        .is_some_and(|decoded| decoded == expected.as_bytes())
}

fn error(status: StatusCode, code: &str) -> Response {
    (status, Json(json!({ "error": code }))).into_response()
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let endpoint = shared.endpoint(parts.uri.path());
    let counter = match endpoint {
        Some(Endpoint::Metadata) => Some(&shared.discovery_fetches),
        Some(Endpoint::Jwks) => Some(&shared.jwks_fetches),
        Some(Endpoint::Introspect) => Some(&shared.introspections),
        _ => None,
    };
    if let Some(counter) = counter {
        counter.fetch_add(1, Ordering::SeqCst);
    }
    if shared.down.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "idp is down").into_response();
    }
    match (endpoint, parts.method) {
        (Some(Endpoint::Metadata), Method::GET) => Json(shared.metadata()).into_response(),
        (Some(Endpoint::Jwks), Method::GET) => {
            let max_age = *shared.jwks_max_age.lock().expect("max age");
            let mut response = Json(shared.jwks()).into_response();
            if let Some(secs) = max_age {
                let value = format!("max-age={secs}").parse().expect("header value");
                response.headers_mut().insert(header::CACHE_CONTROL, value);
            }
            response
        }
        (Some(Endpoint::Introspect), Method::POST) => {
            let form = axum::body::to_bytes(body, 1 << 20)
                .await
                .unwrap_or_default();
            shared.introspect(&parts.headers, &form)
        }
        (Some(Endpoint::Token), Method::POST) => {
            error(StatusCode::BAD_REQUEST, "unsupported_grant_type")
        }
        (Some(Endpoint::Authorize), Method::GET) => {
            error(StatusCode::BAD_REQUEST, "invalid_request")
        }
        (Some(_), _) => StatusCode::METHOD_NOT_ALLOWED.into_response(),
        (None, _) => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Body::from("not found"))
            .unwrap_or_default(),
    }
}

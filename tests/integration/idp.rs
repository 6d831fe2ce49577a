//! An in-process OAuth 2.1 authorization server on loopback, for the auth tests. It owns
//! everything a resource server asks of an IdP: discovery metadata (OIDC, or RFC 8414
//! only), a JWKS, RFC 7662 introspection of registered opaque tokens, and the tokens
//! themselves — well-formed ones for every algorithm drawbridge accepts, and deliberately
//! bad ones (`alg: none`, HS256 keyed with the public key, a key not in the JWKS).
//! Test controls: key rotation, an outage switch (every request answers 503), the JWKS
//! `Cache-Control` max-age, and counters of fetches.
//!
//! `/token` runs two grants for the gateway's own client: RFC 8693 token exchange (the
//! subject token must be one this IdP signed and not expired; the issued RS256 token has
//! the requested audience, at most the subject's scopes, and `act.sub` = the client) and
//! client credentials. Clients authenticate with `client_secret_basic` (form-urlencoded
//! parts, RFC 6749 §2.3.1), `client_secret_post`, or RFC 7523 `private_key_jwt` for keys
//! registered with [`Idp::register_jwt_client`]. Test controls: issued-token lifetime, a
//! canned answer and a delay for `/token`, and a record of the last request's form.
//! It does not run login or code flows: `/authorize` is advertised but refuses every request.
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

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaPublicKeyComponents, UnparsedPublicKey,
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, ED25519, RSA_PKCS1_2048_8192_SHA256,
    RSA_PSS_2048_8192_SHA256,
};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::sha2::{Digest, Sha256};
use rsa::traits::PublicKeyParts;
use rsa::{Pkcs1v15Sign, Pss, RsaPrivateKey};
use serde_json::{json, Value};
use tokio::sync::oneshot;

/// The client drawbridge must authenticate as (HTTP Basic) to call `/introspect`.
pub const INTROSPECTION_CLIENT_ID: &str = "drawbridge";
pub const INTROSPECTION_CLIENT_SECRET: &str = "introspect-secret";

/// The client drawbridge authenticates as at `/token` (Basic or post). More clients:
/// [`Idp::register_client`], [`Idp::register_jwt_client`].
pub const EXCHANGE_CLIENT_ID: &str = "drawbridge";
pub const EXCHANGE_CLIENT_SECRET: &str = "exchange-secret";

pub const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
pub const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Lifetime of issued tokens unless [`Idp::set_exchange_lifetime`] says otherwise.
pub const DEFAULT_EXCHANGE_LIFETIME: u64 = 300;

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
    /// `/introspect` waits this long before answering (after counting the request).
    introspection_delay: Mutex<Duration>,
    /// The introspection client's secret (compared after form-decoding, RFC 6749 §2.3.1).
    introspection_secret: Mutex<String>,
    /// `/jwks` publishes no key at all while set.
    jwks_empty: AtomicBool,
    /// The metadata document and `/jwks` wait this long before answering.
    keys_delay: Mutex<Duration>,
    /// The metadata document and `/jwks` answer 200 with bytes that are not JSON.
    keys_garbage: AtomicBool,
    token: TokenState,
}

/// Everything `/token` keeps.
struct TokenState {
    clients: Mutex<HashMap<String, ClientKey>>,
    /// `jti`s of client assertions already accepted (replay protection).
    seen_assertions: Mutex<HashSet<String>>,
    lifetime: AtomicU64,
    requests: AtomicUsize,
    last_form: Mutex<Option<Vec<(String, String)>>>,
    canned: Mutex<Option<(u16, String)>>,
    delay: Mutex<Duration>,
}

/// How a registered client proves itself.
enum ClientKey {
    Secret(String),
    /// RS256 assertions: the public modulus and exponent, big-endian.
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// ES256 assertions: the uncompressed P-256 point.
    Ec(Vec<u8>),
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
            introspection_delay: Mutex::default(),
            introspection_secret: Mutex::new(INTROSPECTION_CLIENT_SECRET.to_string()),
            jwks_empty: AtomicBool::new(false),
            keys_delay: Mutex::default(),
            keys_garbage: AtomicBool::new(false),
            token: TokenState {
                clients: Mutex::new(HashMap::from([(
                    EXCHANGE_CLIENT_ID.to_string(),
                    ClientKey::Secret(EXCHANGE_CLIENT_SECRET.to_string()),
                )])),
                seen_assertions: Mutex::default(),
                lifetime: AtomicU64::new(DEFAULT_EXCHANGE_LIFETIME),
                requests: AtomicUsize::new(0),
                last_form: Mutex::default(),
                canned: Mutex::default(),
                delay: Mutex::default(),
            },
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

    pub fn token_url(&self) -> String {
        format!("{}/token", self.issuer)
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
        caller_token(compact(&input, &signature))
    }

    /// An unsigned token: header `{"alg": "none", "kid": "rsa-1"}`, empty signature.
    pub fn mint_alg_none(&self, claims: &Value) -> String {
        let input = signing_input(&json!({ "alg": "none", "kid": "rsa-1" }), claims);
        caller_token(compact(&input, &[]))
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
        caller_token(compact(&input, &sign_rs256(key, &input)))
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
        crate::upstream::register_caller_token(token);
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

    /// `expires_in` (and `exp - iat`) of tokens `/token` issues from now on.
    pub fn set_exchange_lifetime(&self, secs: u64) {
        self.shared.token.lifetime.store(secs, Ordering::SeqCst);
    }

    /// Requests that reached `/token`, whatever their outcome (also while down).
    pub fn token_requests(&self) -> usize {
        self.shared.token.requests.load(Ordering::SeqCst)
    }

    /// The form fields of the last `/token` request, in order, decoded.
    pub fn last_token_request(&self) -> Option<Vec<(String, String)>> {
        self.shared
            .token
            .last_form
            .lock()
            .expect("last form")
            .clone()
    }

    /// Adds (or replaces) a `client_secret_basic` / `client_secret_post` client.
    pub fn register_client(&self, client_id: &str, secret: &str) {
        self.shared
            .token
            .clients
            .lock()
            .expect("clients")
            .insert(client_id.to_string(), ClientKey::Secret(secret.to_string()));
    }

    /// Registers a `private_key_jwt` client with a new key for `alg` (RS256 or ES256) and
    /// returns the private key as PKCS#8 PEM, for the gateway's key file. The IdP then
    /// accepts assertions signed by it with `iss` = `sub` = `client_id`, `aud` =
    /// [`Idp::token_url`], an unexpired `exp` and a `jti` not seen before.
    pub fn register_jwt_client(&self, client_id: &str, alg: Alg) -> String {
        let (key, pem) = match alg {
            Alg::RS256 => {
                let private = fresh_rsa_key();
                let pem = private
                    .to_pkcs8_pem(LineEnding::LF)
                    .expect("PKCS#8 PEM")
                    .to_string();
                let key = ClientKey::Rsa {
                    n: private.n().to_bytes_be(),
                    e: private.e().to_bytes_be(),
                };
                (key, pem)
            }
            Alg::ES256 => {
                let rng = SystemRandom::new();
                let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .expect("generate EC key");
                let pair = EcdsaKeyPair::from_pkcs8(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    pkcs8.as_ref(),
                    &rng,
                )
                .expect("load EC key");
                let key = ClientKey::Ec(pair.public_key().as_ref().to_vec());
                (key, pkcs8_pem(pkcs8.as_ref()))
            }
            other => panic!("private_key_jwt clients use RS256 or ES256, not {other:?}"),
        };
        self.shared
            .token
            .clients
            .lock()
            .expect("clients")
            .insert(client_id.to_string(), key);
        pem
    }

    /// Makes `/token` answer `status` with `body` (as `application/json`, verbatim, so it
    /// may be malformed) for every request, after counting and recording it. `None`
    /// restores the real endpoint.
    pub fn set_token_response(&self, canned: Option<(u16, String)>) {
        *self.shared.token.canned.lock().expect("canned") = canned;
    }

    /// `/introspect` waits this long before answering (after counting the request).
    pub fn set_introspection_delay(&self, delay: Duration) {
        *self.shared.introspection_delay.lock().expect("delay") = delay;
    }

    /// The secret the introspection client must present (form-encoded inside Basic).
    pub fn set_introspection_secret(&self, secret: &str) {
        *self.shared.introspection_secret.lock().expect("secret") = secret.to_string();
    }

    /// While `empty`, `/jwks` answers `{"keys": []}`.
    pub fn set_jwks_empty(&self, empty: bool) {
        self.shared.jwks_empty.store(empty, Ordering::SeqCst);
    }

    /// The metadata document and `/jwks` wait this long before answering (after
    /// counting the request).
    pub fn set_keys_delay(&self, delay: Duration) {
        *self.shared.keys_delay.lock().expect("delay") = delay;
    }

    /// While set, the metadata document and `/jwks` answer 200 `application/json` with
    /// bytes that are not JSON.
    pub fn set_keys_garbage(&self, garbage: bool) {
        self.shared.keys_garbage.store(garbage, Ordering::SeqCst);
    }

    /// `/token` waits this long before answering (after recording the request).
    pub fn set_token_delay(&self, delay: Duration) {
        *self.shared.token.delay.lock().expect("delay") = delay;
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
    caller_token(compact(
        &input,
        ring::hmac::sign(&key, input.as_bytes()).as_ref(),
    ))
}

/// Every token minted here is a caller's: the upstream stubs' leak check looks for it.
fn caller_token(token: String) -> String {
    crate::upstream::register_caller_token(&token);
    token
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
            "token_endpoint_auth_methods_supported": [
                "client_secret_basic", "client_secret_post", "private_key_jwt"
            ],
            "token_endpoint_auth_signing_alg_values_supported": ["RS256", "ES256"],
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
        if self.jwks_empty.load(Ordering::SeqCst) {
            return json!({ "keys": [] });
        }
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
        let secret = self.introspection_secret.lock().expect("secret").clone();
        if !has_introspection_client(headers, &secret) {
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

/// HTTP Basic with exactly the expected client, each part form-decoded as RFC 6749
/// §2.3.1 requires (so a secret with ':' or '%' works only when sent encoded).
fn has_introspection_client(headers: &HeaderMap, secret: &str) -> bool {
    let decoded = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b64| STANDARD.decode(b64.trim()).ok())
        .and_then(|d| String::from_utf8(d).ok());
    let Some((id, presented)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
        return false;
    };
    let form_decode = |part: &str| -> String {
        url::form_urlencoded::parse(format!("x={part}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    form_decode(id) == INTROSPECTION_CLIENT_ID && form_decode(presented) == secret
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
        Some(Endpoint::Token) => Some(&shared.token.requests),
        _ => None,
    };
    if let Some(counter) = counter {
        counter.fetch_add(1, Ordering::SeqCst);
    }
    // The token endpoint's form is recorded even when the answer will be 503.
    let (token_form, body) = if endpoint == Some(Endpoint::Token) && parts.method == Method::POST {
        let form = axum::body::to_bytes(body, 1 << 20)
            .await
            .unwrap_or_default();
        let fields: Vec<(String, String)> = url::form_urlencoded::parse(&form)
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            .collect();
        *shared.token.last_form.lock().expect("last form") = Some(fields.clone());
        (Some(fields), Body::empty())
    } else {
        (None, body)
    };
    if shared.down.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "idp is down").into_response();
    }
    if matches!(endpoint, Some(Endpoint::Metadata | Endpoint::Jwks)) {
        let delay = *shared.keys_delay.lock().expect("delay");
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if shared.keys_garbage.load(Ordering::SeqCst) {
            return Response::builder()
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("<html>502 Bad Gateway</html>{\"keys\":["))
                .unwrap_or_default();
        }
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
            let delay = *shared.introspection_delay.lock().expect("delay");
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            shared.introspect(&parts.headers, &form)
        }
        (Some(Endpoint::Token), Method::POST) => {
            shared
                .token(&parts.headers, token_form.unwrap_or_default())
                .await
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

// ---- /token ----------------------------------------------------------------------------

/// A `/token` refusal: status and OAuth error code (401s also challenge for Basic).
struct Refusal(StatusCode, &'static str);

impl Refusal {
    fn bad_request(code: &'static str) -> Refusal {
        Refusal(StatusCode::BAD_REQUEST, code)
    }

    fn invalid_client() -> Refusal {
        Refusal(StatusCode::UNAUTHORIZED, "invalid_client")
    }

    fn into_response(self) -> Response {
        let Refusal(status, code) = self;
        if status == StatusCode::UNAUTHORIZED {
            return (
                status,
                [(header::WWW_AUTHENTICATE, "Basic realm=\"idp\"")],
                Json(json!({ "error": code })),
            )
                .into_response();
        }
        error(status, code)
    }
}

/// The decoded form of one token request. Every parameter may appear once (RFC 6749 §3.2).
struct Form(Vec<(String, String)>);

impl Form {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    fn has_duplicates(&self) -> bool {
        let mut names = HashSet::new();
        !self.0.iter().all(|(name, _)| names.insert(name.as_str()))
    }
}

impl Shared {
    async fn token(&self, headers: &HeaderMap, fields: Vec<(String, String)>) -> Response {
        let delay = *self.token.delay.lock().expect("delay");
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if let Some((status, body)) = self.token.canned.lock().expect("canned").clone() {
            return Response::builder()
                .status(status)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body))
                .unwrap_or_default();
        }
        let form = Form(fields);
        match self.grant(headers, &form) {
            Ok(answer) => ([(header::CACHE_CONTROL, "no-store")], Json(answer)).into_response(),
            Err(refusal) => refusal.into_response(),
        }
    }

    fn grant(&self, headers: &HeaderMap, form: &Form) -> Result<Value, Refusal> {
        if form.has_duplicates() {
            return Err(Refusal::bad_request("invalid_request"));
        }
        let client_id = self.authenticate_client(headers, form)?;
        match form.get("grant_type") {
            Some(TOKEN_EXCHANGE_GRANT) => self.token_exchange(&client_id, form),
            Some("client_credentials") => Ok(self.client_credentials(&client_id, form)),
            Some(_) => Err(Refusal::bad_request("unsupported_grant_type")),
            None => Err(Refusal::bad_request("invalid_request")),
        }
    }

    /// Exactly one of Basic, post or assertion, for a registered client; its id.
    fn authenticate_client(&self, headers: &HeaderMap, form: &Form) -> Result<String, Refusal> {
        let basic = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "));
        let post = form.get("client_secret");
        let assertion = form.get("client_assertion");
        let methods = [basic.is_some(), post.is_some(), assertion.is_some()];
        match methods.iter().filter(|used| **used).count() {
            0 => return Err(Refusal::invalid_client()),
            1 => {}
            _ => return Err(Refusal::bad_request("invalid_request")),
        }
        if let Some(encoded) = basic {
            let (id, secret) = decode_basic(encoded).ok_or_else(Refusal::invalid_client)?;
            return self
                .check_secret(&id, &secret)
                .then_some(id)
                .ok_or_else(Refusal::invalid_client);
        }
        if let Some(secret) = post {
            let id = form.get("client_id").ok_or_else(Refusal::invalid_client)?;
            return self
                .check_secret(id, secret)
                .then(|| id.to_string())
                .ok_or_else(Refusal::invalid_client);
        }
        let assertion = assertion.unwrap_or_default();
        if form.get("client_assertion_type") != Some(CLIENT_ASSERTION_TYPE) {
            return Err(Refusal::bad_request("invalid_request"));
        }
        let id = self
            .check_assertion(assertion)
            .ok_or_else(Refusal::invalid_client)?;
        match form.get("client_id") {
            Some(named) if named != id => Err(Refusal::invalid_client()),
            _ => Ok(id),
        }
    }

    fn check_secret(&self, client_id: &str, secret: &str) -> bool {
        matches!(
            self.token.clients.lock().expect("clients").get(client_id),
            Some(ClientKey::Secret(expected)) if expected == secret
        )
    }

    /// RFC 7523 §3 checks of a client assertion; the client id when all pass.
    fn check_assertion(&self, assertion: &str) -> Option<String> {
        let (header, claims, input, signature) = split_jws(assertion)?;
        let client_id = claims["iss"].as_str()?.to_string();
        if claims["sub"] != client_id.as_str() {
            return None;
        }
        let verified = match self
            .token
            .clients
            .lock()
            .expect("clients")
            .get(&client_id)?
        {
            ClientKey::Rsa { n, e } => {
                header["alg"] == "RS256"
                    && RsaPublicKeyComponents { n, e }
                        .verify(&RSA_PKCS1_2048_8192_SHA256, input.as_bytes(), &signature)
                        .is_ok()
            }
            ClientKey::Ec(point) => {
                header["alg"] == "ES256"
                    && UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                        .verify(input.as_bytes(), &signature)
                        .is_ok()
            }
            ClientKey::Secret(_) => false,
        };
        let token_url = format!("{}/token", self.issuer);
        let audience_ok = match &claims["aud"] {
            Value::String(aud) => *aud == token_url,
            Value::Array(auds) => auds.iter().any(|a| *a == token_url.as_str()),
            _ => false,
        };
        let unexpired = claims["exp"].as_u64().is_some_and(|exp| exp > unix_now());
        let jti = claims["jti"].as_str()?;
        if !(verified && audience_ok && unexpired) {
            return None;
        }
        let fresh = self
            .token
            .seen_assertions
            .lock()
            .expect("seen assertions")
            .insert(jti.to_string());
        fresh.then_some(client_id)
    }

    /// The claims of `token` if this IdP signed it with a key it publishes now and it has
    /// not expired.
    fn verify_own_token(&self, token: &str) -> Option<Value> {
        let (header, claims, input, signature) = split_jws(token)?;
        let message = input.as_bytes();
        let keys = self.keys.lock().expect("keys");
        let verified = match header["alg"].as_str()? {
            alg @ ("RS256" | "PS256") => {
                let key = keys.rsa.iter().find(|k| header["kid"] == k.kid.as_str())?;
                let (n, e) = (key.key.n().to_bytes_be(), key.key.e().to_bytes_be());
                let params = if alg == "RS256" {
                    &RSA_PKCS1_2048_8192_SHA256
                } else {
                    &RSA_PSS_2048_8192_SHA256
                };
                RsaPublicKeyComponents { n, e }
                    .verify(params, message, &signature)
                    .is_ok()
            }
            "ES256" => UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, keys.ec.public_key())
                .verify(message, &signature)
                .is_ok(),
            "EdDSA" => UnparsedPublicKey::new(&ED25519, keys.ed.public_key())
                .verify(message, &signature)
                .is_ok(),
            _ => false,
        };
        let unexpired = claims["exp"].as_u64().is_some_and(|exp| exp > unix_now());
        (verified && unexpired).then_some(claims)
    }

    /// RFC 8693 §2: the subject's user and client, the requested audience, at most the
    /// subject's scopes, and the exchanging client as the actor.
    fn token_exchange(&self, client_id: &str, form: &Form) -> Result<Value, Refusal> {
        let subject_token = form
            .get("subject_token")
            .ok_or(Refusal::bad_request("invalid_request"))?;
        if form.get("subject_token_type") != Some(ACCESS_TOKEN_TYPE) {
            return Err(Refusal::bad_request("invalid_request"));
        }
        if let Some(requested) = form.get("requested_token_type") {
            if requested != ACCESS_TOKEN_TYPE && requested != JWT_TOKEN_TYPE {
                return Err(Refusal::bad_request("invalid_request"));
            }
        }
        let subject = self
            .verify_own_token(subject_token)
            .ok_or(Refusal::bad_request("invalid_grant"))?;
        let audience = form
            .get("audience")
            .or_else(|| form.get("resource"))
            .ok_or(Refusal::bad_request("invalid_target"))?;
        let held: Vec<&str> = subject["scope"]
            .as_str()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        let scope = match form.get("scope") {
            Some(requested) => {
                if !requested.split_whitespace().all(|s| held.contains(&s)) {
                    return Err(Refusal::bad_request("invalid_scope"));
                }
                requested.split_whitespace().collect::<Vec<_>>().join(" ")
            }
            None => held.join(" "),
        };
        let mut claims = self.issued_claims(audience);
        claims["sub"] = subject["sub"].clone();
        claims["client_id"] = subject["client_id"].clone();
        claims["scope"] = json!(scope);
        claims["act"] = json!({ "sub": client_id });
        let mut answer = self.answer(&claims);
        answer["issued_token_type"] = json!(ACCESS_TOKEN_TYPE);
        Ok(answer)
    }

    /// RFC 6749 §4.4: a token for the client itself.
    fn client_credentials(&self, client_id: &str, form: &Form) -> Value {
        let audience = form.get("audience").or_else(|| form.get("resource"));
        let mut claims = self.issued_claims(audience.unwrap_or_default());
        if audience.is_none() {
            if let Some(claims) = claims.as_object_mut() {
                claims.remove("aud");
            }
        }
        claims["sub"] = json!(client_id);
        claims["client_id"] = json!(client_id);
        if let Some(scope) = form.get("scope") {
            claims["scope"] = json!(scope);
        }
        self.answer(&claims)
    }

    fn issued_claims(&self, audience: &str) -> Value {
        let now = unix_now();
        json!({
            "iss": self.issuer,
            "aud": audience,
            "iat": now,
            "nbf": now,
            "exp": now + self.token.lifetime.load(Ordering::SeqCst),
            "jti": random_id(),
        })
    }

    /// Signs `claims` (RS256, current key, `typ: at+jwt`) into a token response.
    fn answer(&self, claims: &Value) -> Value {
        let key = self.keys.lock().expect("keys").current_rsa();
        let header = json!({ "alg": "RS256", "typ": "at+jwt", "kid": key.kid });
        let input = signing_input(&header, claims);
        let token = compact(&input, &sign_rs256(&key.key, &input));
        json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": self.token.lifetime.load(Ordering::SeqCst),
        })
    }
}

/// Header, claims, signing input and signature of a compact JWS; `None` if malformed.
fn split_jws(token: &str) -> Option<(Value, Value, &str, Vec<u8>)> {
    let (input, signature) = token.rsplit_once('.')?;
    let (header, claims) = input.split_once('.')?;
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).ok()?).ok()?;
    let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
    (header.is_object() && claims.is_object()).then_some((header, claims, input, signature))
}

/// The claims of a compact JWS, unverified: for tests that inspect what was issued.
pub fn unverified_claims(token: &str) -> Value {
    split_jws(token).expect("a compact JWS").1
}

/// RFC 6749 §2.3.1: Basic credentials whose two parts are form-urlencoded.
fn decode_basic(encoded: &str) -> Option<(String, String)> {
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unform = |part: &str| {
        url::form_urlencoded::parse(format!("v={part}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((unform(id)?, unform(secret)?))
}

fn pkcs8_pem(der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|line| std::str::from_utf8(line).expect("base64 is ASCII"))
        .collect();
    format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    )
}

//! The token client and the cache against an in-process token endpoint on loopback that
//! records every request, answers what the test tells it to, and verifies client
//! assertions with `ring` against the public half of the test key.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, KeyPair, RsaPublicKeyComponents, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED,
    ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_2048_8192_SHA256,
};
use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::*;
use crate::jose::{KeyError, SigningKey};

const SUBJECT: &str = "eyJzdWJqZWN0LXRva2VuIn0.c3ViamVjdA.c2ln";
const ISSUED: &str = "issued-upstream-token-1234";

// ---- the test token endpoint -------------------------------------------------------------

/// The public half of the key the endpoint expects client assertions to be signed with.
enum AssertionKey {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    Ec(Vec<u8>),
}

#[derive(Clone, Debug)]
struct Recorded {
    authorization: Option<String>,
    form: Vec<(String, String)>,
}

impl Recorded {
    fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

struct EndpointState {
    url: String,
    calls: AtomicUsize,
    last: Mutex<Option<Recorded>>,
    answer: Mutex<(u16, String)>,
    delay: Mutex<Duration>,
    assertion_key: Mutex<Option<AssertionKey>>,
}

struct TestEndpoint {
    url: url::Url,
    state: Arc<EndpointState>,
    _shutdown: oneshot::Sender<()>,
}

impl TestEndpoint {
    async fn start() -> TestEndpoint {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/oauth/token", listener.local_addr().unwrap());
        let state = Arc::new(EndpointState {
            url: url.clone(),
            calls: AtomicUsize::new(0),
            last: Mutex::new(None),
            answer: Mutex::new((200, bearer(300).to_string())),
            delay: Mutex::new(Duration::ZERO),
            assertion_key: Mutex::new(None),
        });
        let app = axum::Router::new()
            .route("/oauth/token", axum::routing::post(token_endpoint))
            .with_state(state.clone());
        let (shutdown, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        TestEndpoint {
            url: url.parse().unwrap(),
            state,
            _shutdown: shutdown,
        }
    }

    fn answer(&self, status: u16, body: Value) {
        *self.state.answer.lock().unwrap() = (status, body.to_string());
    }

    fn answer_raw(&self, status: u16, body: &str) {
        *self.state.answer.lock().unwrap() = (status, body.to_string());
    }

    fn delay(&self, delay: Duration) {
        *self.state.delay.lock().unwrap() = delay;
    }

    fn calls(&self) -> usize {
        self.state.calls.load(Ordering::SeqCst)
    }

    fn last(&self) -> Recorded {
        self.state.last.lock().unwrap().clone().expect("a request")
    }

    fn client(&self, auth: ClientAuth) -> TokenClient {
        let http = TokenClient::http_client(Duration::from_secs(5)).unwrap();
        TokenClient::new(http, self.url.clone(), auth)
    }
}

fn bearer(expires_in: u64) -> Value {
    json!({
        "access_token": ISSUED,
        "issued_token_type": ACCESS_TOKEN_TYPE,
        "token_type": "Bearer",
        "expires_in": expires_in,
    })
}

async fn token_endpoint(
    State(state): State<Arc<EndpointState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.calls.fetch_add(1, Ordering::SeqCst);
    let recorded = Recorded {
        authorization: headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        form: url::form_urlencoded::parse(&body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
    };
    *state.last.lock().unwrap() = Some(recorded.clone());
    let delay = *state.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some(assertion) = recorded.field("client_assertion") {
        if !assertion_is_valid(&state, assertion) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::CONTENT_TYPE, "application/json")],
                json!({"error": "invalid_client"}).to_string(),
            )
                .into_response();
        }
    }
    let (status, body) = state.answer.lock().unwrap().clone();
    (
        StatusCode::from_u16(status).unwrap(),
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// RFC 7523 §3 as an authorization server checks it: the signature under the registered
/// key, `iss` = `sub` = the client, `aud` = this endpoint, a short life, a `jti`.
fn assertion_is_valid(state: &EndpointState, assertion: &str) -> bool {
    let Some((input, signature)) = assertion.rsplit_once('.') else {
        return false;
    };
    let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
    let verified = match &*state.assertion_key.lock().unwrap() {
        Some(AssertionKey::Rsa { n, e }) => RsaPublicKeyComponents { n, e }
            .verify(&RSA_PKCS1_2048_8192_SHA256, input.as_bytes(), &signature)
            .is_ok(),
        Some(AssertionKey::Ec(point)) => UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
            .verify(input.as_bytes(), &signature)
            .is_ok(),
        None => false,
    };
    let (_, claims) = input.split_once('.').unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
    verified
        && claims["iss"] == "gateway"
        && claims["sub"] == "gateway"
        && claims["aud"] == state.url.as_str()
        && claims["exp"].as_u64().unwrap() == claims["iat"].as_u64().unwrap() + 60
        && claims["jti"].as_str().is_some_and(|j| j.len() >= 16)
}

fn decode_jwt_part(token: &str, index: usize) -> Value {
    let part = token.split('.').nth(index).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

fn basic(client_id: &str, secret: &str) -> ClientAuth {
    ClientAuth::Basic {
        client_id: client_id.into(),
        secret: Secret::new(secret.into()),
    }
}

fn post(client_id: &str, secret: &str) -> ClientAuth {
    ClientAuth::Post {
        client_id: client_id.into(),
        secret: Secret::new(secret.into()),
    }
}

fn scopes(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn request<'a>(scopes: &'a [String]) -> ExchangeRequest<'a> {
    ExchangeRequest {
        subject_token: SUBJECT,
        audience: Some("everything-server"),
        resource: Some("https://upstream.example/mcp"),
        scopes,
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

fn ec_key() -> (String, Vec<u8>) {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    (
        pem("PRIVATE KEY", pkcs8.as_ref()),
        pair.public_key().as_ref().to_vec(),
    )
}

fn rsa_key() -> (String, AssertionKey) {
    use rsa::pkcs8::{EncodePrivateKey, LineEnding};
    use rsa::traits::PublicKeyParts;
    let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
    let pem = key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
    let public = AssertionKey::Rsa {
        n: key.n().to_bytes_be(),
        e: key.e().to_bytes_be(),
    };
    (pem, public)
}

// ---- requests ------------------------------------------------------------------------------

#[tokio::test]
async fn exchange_sends_rfc8693_fields_with_form_encoded_basic_auth() {
    let idp = TestEndpoint::start().await;
    let secret = "p:ss%w0rd +x";
    let client = idp.client(basic("gate:way", secret));
    let wanted = scopes(&["tools:echo", "tools:read"]);
    let token = client.exchange(&request(&wanted)).await.unwrap();
    assert_eq!(token.token(), ISSUED);

    let seen = idp.last();
    assert_eq!(seen.field("grant_type"), Some(TOKEN_EXCHANGE_GRANT));
    assert_eq!(seen.field("subject_token"), Some(SUBJECT));
    assert_eq!(seen.field("subject_token_type"), Some(ACCESS_TOKEN_TYPE));
    assert_eq!(seen.field("requested_token_type"), Some(ACCESS_TOKEN_TYPE));
    assert_eq!(seen.field("audience"), Some("everything-server"));
    assert_eq!(seen.field("resource"), Some("https://upstream.example/mcp"));
    assert_eq!(seen.field("scope"), Some("tools:echo tools:read"));
    assert_eq!(seen.field("client_secret"), None);
    assert_eq!(seen.field("client_id"), None);

    // RFC 6749 §2.3.1: Basic over the form-urlencoded parts, so the server splits at the
    // one raw ':' and decodes each side back to the original.
    let b64 = seen.authorization.unwrap();
    let decoded = STANDARD
        .decode(b64.strip_prefix("Basic ").unwrap())
        .unwrap();
    let decoded = String::from_utf8(decoded).unwrap();
    assert_eq!(decoded, "gate%3Away:p%3Ass%25w0rd+%2Bx");
    let (id, pass) = decoded.split_once(':').unwrap();
    let unform = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .unwrap()
            .1
            .into_owned()
    };
    assert_eq!(unform(id), "gate:way");
    assert_eq!(unform(pass), secret);
}

#[tokio::test]
async fn client_credentials_with_post_auth() {
    let idp = TestEndpoint::start().await;
    let client = idp.client(post("gateway", "s3cret"));
    let token = client
        .client_credentials(&scopes(&["upstream:use"]), Some("svc"), None)
        .await
        .unwrap();
    assert_eq!(token.token(), ISSUED);
    let seen = idp.last();
    assert_eq!(seen.authorization, None);
    assert_eq!(seen.field("grant_type"), Some("client_credentials"));
    assert_eq!(seen.field("client_id"), Some("gateway"));
    assert_eq!(seen.field("client_secret"), Some("s3cret"));
    assert_eq!(seen.field("scope"), Some("upstream:use"));
    assert_eq!(seen.field("audience"), Some("svc"));
    assert_eq!(seen.field("resource"), None);
    assert_eq!(seen.field("subject_token"), None);
}

#[tokio::test]
async fn empty_scope_list_sends_no_scope() {
    let idp = TestEndpoint::start().await;
    let client = idp.client(post("gateway", "s"));
    let none = Vec::new();
    let req = ExchangeRequest {
        subject_token: SUBJECT,
        audience: None,
        resource: Some("https://u"),
        scopes: &none,
    };
    client.exchange(&req).await.unwrap();
    let seen = idp.last();
    assert_eq!(seen.field("scope"), None);
    assert_eq!(seen.field("audience"), None);
    client.client_credentials(&none, None, None).await.unwrap();
    assert_eq!(
        idp.last().form.len(),
        3,
        "grant_type, client_id, client_secret"
    );
}

#[tokio::test]
async fn private_key_jwt_es256_assertion_verifies() {
    let idp = TestEndpoint::start().await;
    let (pem, public) = ec_key();
    *idp.state.assertion_key.lock().unwrap() = Some(AssertionKey::Ec(public));
    let key = SigningKey::from_pem(&pem).unwrap();
    assert_eq!(key.algorithm(), "ES256");
    let client = idp.client(ClientAuth::PrivateKeyJwt {
        client_id: "gateway".into(),
        key,
        kid: Some("k-1".into()),
    });
    let wanted = scopes(&["a"]);
    client.exchange(&request(&wanted)).await.unwrap();
    let seen = idp.last();
    assert_eq!(seen.authorization, None);
    assert_eq!(seen.field("client_id"), Some("gateway"));
    assert_eq!(
        seen.field("client_assertion_type"),
        Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
    );
    let assertion = seen.field("client_assertion").unwrap().to_string();
    let header = decode_jwt_part(&assertion, 0);
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["kid"], "k-1");

    // A fresh assertion (new jti) per request.
    client.exchange(&request(&wanted)).await.unwrap();
    let again = idp.last().field("client_assertion").unwrap().to_string();
    assert_ne!(
        decode_jwt_part(&assertion, 1)["jti"],
        decode_jwt_part(&again, 1)["jti"]
    );
}

#[tokio::test]
async fn private_key_jwt_rs256_assertion_verifies_and_a_wrong_key_is_refused() {
    let idp = TestEndpoint::start().await;
    let (pem, public) = tokio::task::spawn_blocking(rsa_key).await.unwrap();
    *idp.state.assertion_key.lock().unwrap() = Some(public);
    let key = SigningKey::from_pem(&pem).unwrap();
    assert_eq!(format!("{key:?}"), "SigningKey(RS256)");
    let client = idp.client(ClientAuth::PrivateKeyJwt {
        client_id: "gateway".into(),
        key,
        kid: None,
    });
    client.client_credentials(&[], None, None).await.unwrap();
    let assertion = idp.last().field("client_assertion").unwrap().to_string();
    assert_eq!(
        decode_jwt_part(&assertion, 0),
        json!({"alg": "RS256", "typ": "JWT"})
    );

    // The endpoint really checks: under another registered key the same client fails.
    let (_, other) = ec_key();
    *idp.state.assertion_key.lock().unwrap() = Some(AssertionKey::Ec(other));
    let error = client
        .client_credentials(&[], None, None)
        .await
        .unwrap_err();
    assert_eq!(
        error,
        ExchangeError::Rejected {
            status: 401,
            error: Some("invalid_client".into())
        }
    );
    assert_eq!(error.kind(), FailureKind::BadGateway);
}

#[test]
fn keys_that_cannot_sign_are_refused_at_load() {
    assert_eq!(
        SigningKey::from_pem("nothing").unwrap_err(),
        KeyError::NoKey
    );
    let sec1 = pem("EC PRIVATE KEY", &[0x30, 0x00]);
    assert_eq!(
        SigningKey::from_pem(&sec1).unwrap_err(),
        KeyError::Sec1NotSupported
    );
    let junk = pem("PRIVATE KEY", &[0x30, 0x03, 0x02, 0x01, 0x00]);
    assert_eq!(
        SigningKey::from_pem(&junk).unwrap_err(),
        KeyError::Unsupported
    );
}

// ---- answers -------------------------------------------------------------------------------

#[tokio::test]
async fn unusable_answers_are_refused() {
    let idp = TestEndpoint::start().await;
    let client = idp.client(basic("gateway", "s"));
    let wanted = scopes(&["a"]);
    let cases = [
        (
            json!({"token_type": "Bearer", "expires_in": 60}),
            "no access_token",
        ),
        (
            json!({"access_token": "", "token_type": "Bearer"}),
            "no access_token",
        ),
        (
            json!({"access_token": ISSUED, "token_type": "MAC"}),
            "token_type is not Bearer or N_A",
        ),
        (
            json!({"access_token": ISSUED}),
            "token_type is not Bearer or N_A",
        ),
        (
            json!({"access_token": ISSUED, "token_type": "Bearer",
                   "issued_token_type": "urn:ietf:params:oauth:token-type:refresh_token"}),
            "issued_token_type is not an access token",
        ),
        (json!([1, 2]), "not a JSON object"),
    ];
    for (answer, reason) in cases {
        idp.answer(200, answer.clone());
        let error = client.exchange(&request(&wanted)).await.unwrap_err();
        assert_eq!(error, ExchangeError::InvalidResponse(reason), "{answer}");
        assert_eq!(error.result_label(), "invalid_response");
        assert_eq!(error.kind(), FailureKind::BadGateway);
    }
    idp.answer_raw(200, "<html>");
    let garbage = client.exchange(&request(&wanted)).await.unwrap_err();
    assert_eq!(garbage, ExchangeError::InvalidResponse("not JSON"));
    assert_eq!(garbage.result_label(), "invalid_response");
    // Not a token response at all: the server is failing, the caller may retry.
    assert_eq!(garbage.kind(), FailureKind::Unavailable);
    idp.answer(201, bearer(60));
    assert_eq!(
        client
            .exchange(&request(&wanted))
            .await
            .unwrap_err()
            .result_label(),
        "invalid_response"
    );
    // N_A says nothing of what was issued: without issued_token_type it is refused.
    idp.answer(
        200,
        json!({"access_token": ISSUED, "token_type": "N_A", "expires_in": 60}),
    );
    assert_eq!(
        client.exchange(&request(&wanted)).await.unwrap_err(),
        ExchangeError::InvalidResponse("token_type N_A without issued_token_type")
    );
    idp.answer(
        200,
        json!({"access_token": ISSUED, "token_type": "N_A", "expires_in": 60,
               "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"}),
    );
    let token = client.exchange(&request(&wanted)).await.unwrap();
    assert_eq!(token.authorization, format!("Bearer {ISSUED}").as_str());
    assert!(token.expires_at <= Instant::now() + Duration::from_secs(60));
    assert!(token.expires_at > Instant::now() + Duration::from_secs(55));
}

#[tokio::test]
async fn error_answers_keep_the_code_only() {
    let idp = TestEndpoint::start().await;
    let client = idp.client(basic("gateway", "s"));
    let wanted = scopes(&["a"]);
    idp.answer(
        400,
        json!({"error": "invalid_grant", "error_description": format!("bad token {SUBJECT}")}),
    );
    let error = client.exchange(&request(&wanted)).await.unwrap_err();
    assert_eq!(
        error,
        ExchangeError::Rejected {
            status: 400,
            error: Some("invalid_grant".into())
        }
    );
    assert_eq!(error.result_label(), "rejected");
    assert_eq!(error.kind(), FailureKind::Denied);
    assert!(!format!("{error} {error:?}").contains(SUBJECT));

    idp.answer(400, json!({"error": "invalid_target"}));
    let error = client.exchange(&request(&wanted)).await.unwrap_err();
    assert_eq!(error.kind(), FailureKind::Denied);

    idp.answer(401, json!({"error": "invalid_client"}));
    let error = client.exchange(&request(&wanted)).await.unwrap_err();
    assert_eq!(error.kind(), FailureKind::BadGateway);

    idp.answer_raw(503, "busy");
    let error = client.exchange(&request(&wanted)).await.unwrap_err();
    assert_eq!(
        error,
        ExchangeError::Rejected {
            status: 503,
            error: None
        }
    );
    assert_eq!(error.kind(), FailureKind::Unavailable);
}

#[tokio::test]
async fn unreachable_and_slow_endpoints_are_transport_errors() {
    let closed = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let http = TokenClient::http_client(Duration::from_millis(300)).unwrap();
    let url: url::Url = format!("http://{closed}/token?secret=querysecret")
        .parse()
        .unwrap();
    let client = TokenClient::new(http.clone(), url, basic("gateway", "s"));
    let wanted = scopes(&["a"]);
    let error = client.exchange(&request(&wanted)).await.unwrap_err();
    assert!(matches!(error, ExchangeError::Transport(_)), "{error:?}");
    assert_eq!(error.result_label(), "transport_error");
    assert_eq!(error.kind(), FailureKind::Unavailable);
    assert!(!format!("{error} {error:?}").contains("querysecret"));

    let idp = TestEndpoint::start().await;
    idp.delay(Duration::from_secs(2));
    let client = TokenClient::new(http, idp.url.clone(), basic("gateway", "s"));
    let error = client.exchange(&request(&wanted)).await.unwrap_err();
    assert!(
        matches!(&error, ExchangeError::Transport(m) if m.starts_with("timed out")),
        "{error:?}"
    );
}

#[tokio::test]
async fn nothing_secret_prints() {
    let idp = TestEndpoint::start().await;
    let (pem, _) = ec_key();
    let clients = [
        idp.client(basic("gateway", "hunter2-basic")),
        idp.client(post("gateway", "hunter2-post")),
        idp.client(ClientAuth::PrivateKeyJwt {
            client_id: "gateway".into(),
            key: SigningKey::from_pem(&pem).unwrap(),
            kid: None,
        }),
    ];
    for client in &clients {
        let printed = format!("{client:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(!printed.contains("BEGIN"), "{printed}");
    }
    let wanted = scopes(&["a"]);
    let token = clients[0].exchange(&request(&wanted)).await.unwrap();
    let printed = format!("{token:?} {:?}", request(&wanted));
    assert!(!printed.contains(ISSUED), "{printed}");
    assert!(!printed.contains(SUBJECT), "{printed}");
}

// ---- cache ---------------------------------------------------------------------------------

fn key_for(subject: &str, scopes: &[String]) -> CacheKey {
    CacheKey::exchange(
        Arc::from("everything"),
        subject_token_hash(subject),
        scopes,
        Some(Arc::from("everything-server")),
        None,
    )
}

async fn cached_exchange(
    cache: &CredentialCache,
    client: &TokenClient,
    wanted: &[String],
) -> (Result<Arc<IssuedToken>, ExchangeError>, CacheOutcome) {
    cache
        .get_or_exchange(key_for(SUBJECT, wanted), None, || async move {
            client.exchange(&request(wanted)).await
        })
        .await
}

#[tokio::test]
async fn second_lookup_is_a_hit() {
    let idp = TestEndpoint::start().await;
    let client = idp.client(basic("gateway", "s"));
    let cache = CredentialCache::new(100);
    let wanted = scopes(&["a", "b"]);
    let (first, outcome) = cached_exchange(&cache, &client, &wanted).await;
    assert_eq!(outcome, CacheOutcome::Miss);
    assert_eq!(first.unwrap().token(), ISSUED);
    let reordered = scopes(&["b", "a"]);
    let (second, outcome) = cached_exchange(&cache, &client, &reordered).await;
    assert_eq!(outcome, CacheOutcome::Hit);
    assert_eq!(second.unwrap().token(), ISSUED);
    assert_eq!(idp.calls(), 1);
}

#[tokio::test]
async fn short_lived_tokens_are_kept_only_with_enough_life() {
    let idp = TestEndpoint::start().await;
    let client = idp.client(basic("gateway", "s"));
    let wanted = scopes(&["a"]);

    // 40 s: kept until 36 s (margin = 10 % < 30 s).
    let cache = CredentialCache::new(100);
    idp.answer(200, bearer(40));
    assert_eq!(
        cached_exchange(&cache, &client, &wanted).await.1,
        CacheOutcome::Miss
    );
    assert_eq!(
        cached_exchange(&cache, &client, &wanted).await.1,
        CacheOutcome::Hit
    );
    assert_eq!(idp.calls(), 1);

    // 3 s: under the 5 s floor, used once and not kept.
    let cache = CredentialCache::new(100);
    idp.answer(200, bearer(3));
    let (token, outcome) = cached_exchange(&cache, &client, &wanted).await;
    assert!(token.is_ok());
    assert_eq!(outcome, CacheOutcome::Miss);
    assert_eq!(
        cached_exchange(&cache, &client, &wanted).await.1,
        CacheOutcome::Miss
    );
    assert_eq!(idp.calls(), 3);
}

#[tokio::test]
async fn the_subject_tokens_expiry_caps_the_entry() {
    let idp = TestEndpoint::start().await;
    let client = idp.client(basic("gateway", "s"));
    let cache = CredentialCache::new(100);
    let wanted = scopes(&["a"]);
    let expired_now = instant_at_unix(0);
    for expected in [CacheOutcome::Miss, CacheOutcome::Miss] {
        let (_, outcome) = cache
            .get_or_exchange(key_for(SUBJECT, &wanted), Some(expired_now), || async {
                client.exchange(&request(&wanted)).await
            })
            .await;
        assert_eq!(outcome, expected);
    }
    assert_eq!(idp.calls(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_identical_misses_make_one_call() {
    let idp = TestEndpoint::start().await;
    idp.delay(Duration::from_millis(300));
    let client = idp.client(basic("gateway", "s"));
    let cache = CredentialCache::new(100);
    let wanted = scopes(&["a"]);
    let lookups = (0..20).map(|_| cached_exchange(&cache, &client, &wanted));
    let results = futures_util::future::join_all(lookups).await;
    assert_eq!(idp.calls(), 1);
    let misses = results
        .iter()
        .filter(|(_, o)| *o == CacheOutcome::Miss)
        .count();
    assert_eq!(misses, 1);
    for (token, _) in &results {
        assert_eq!(token.as_ref().unwrap().token(), ISSUED);
    }
}

#[tokio::test]
async fn different_scopes_routes_and_users_are_separate_entries() {
    let idp = TestEndpoint::start().await;
    let client = idp.client(basic("gateway", "s"));
    let cache = CredentialCache::new(100);
    let a = scopes(&["a"]);
    let b = scopes(&["b"]);
    assert_eq!(
        cached_exchange(&cache, &client, &a).await.1,
        CacheOutcome::Miss
    );
    assert_eq!(
        cached_exchange(&cache, &client, &b).await.1,
        CacheOutcome::Miss
    );
    let other_user = cache
        .get_or_exchange(key_for("another-token", &a), None, || async {
            client.exchange(&request(&a)).await
        })
        .await;
    assert_eq!(other_user.1, CacheOutcome::Miss);
    let other_route = CacheKey::exchange(
        Arc::from("other"),
        subject_token_hash(SUBJECT),
        &a,
        Some(Arc::from("everything-server")),
        None,
    );
    let (_, outcome) = cache
        .get_or_exchange(other_route, None, || async {
            client.exchange(&request(&a)).await
        })
        .await;
    assert_eq!(outcome, CacheOutcome::Miss);
    let service = CacheKey::client_credentials(Arc::from("everything"), &a, None, None);
    let (_, outcome) = cache
        .get_or_exchange(service, None, || client.client_credentials(&a, None, None))
        .await;
    assert_eq!(outcome, CacheOutcome::Miss);
    assert_eq!(
        cached_exchange(&cache, &client, &a).await.1,
        CacheOutcome::Hit
    );
    assert_eq!(idp.calls(), 5);
}

#[tokio::test]
async fn errors_are_not_cached() {
    let idp = TestEndpoint::start().await;
    let client = idp.client(basic("gateway", "s"));
    let cache = CredentialCache::new(100);
    let wanted = scopes(&["a"]);
    idp.answer(400, json!({"error": "invalid_grant"}));
    let (result, outcome) = cached_exchange(&cache, &client, &wanted).await;
    assert_eq!(outcome, CacheOutcome::Miss);
    assert_eq!(result.unwrap_err().kind(), FailureKind::Denied);
    idp.answer(200, bearer(300));
    let (result, outcome) = cached_exchange(&cache, &client, &wanted).await;
    assert_eq!(outcome, CacheOutcome::Miss);
    assert!(result.is_ok());
    assert_eq!(idp.calls(), 2);
}

#[test]
fn a_cached_exchange_is_send() {
    fn assert_send<T: Send>(_: T) {}
    let cache = CredentialCache::new(1);
    let client = TokenClient::new(
        reqwest::Client::new(),
        "http://127.0.0.1:1/token".parse().unwrap(),
        basic("gateway", "s"),
    );
    let wanted = scopes(&["a"]);
    assert_send(cached_exchange(&cache, &client, &wanted));
}

#[tokio::test]
async fn an_unavailable_server_is_asked_once_per_key_until_the_hold_ends() {
    let idp = TestEndpoint::start().await;
    let client = idp.client(basic("gateway", "s"));
    let cache = CredentialCache::new(100);
    let wanted = scopes(&["a"]);
    idp.answer_raw(503, "busy");
    let (first, outcome) = cached_exchange(&cache, &client, &wanted).await;
    assert_eq!(outcome, CacheOutcome::Miss);
    assert_eq!(first.unwrap_err().kind(), FailureKind::Unavailable);
    idp.answer(200, bearer(60));
    for _ in 0..10 {
        let (again, outcome) = cached_exchange(&cache, &client, &wanted).await;
        assert_eq!(outcome, CacheOutcome::Joined);
        assert_eq!(again.unwrap_err().kind(), FailureKind::Unavailable);
    }
    assert_eq!(idp.calls(), 1, "held failures make no call");
    // Another key is not held back by this one's failure.
    let other = cache
        .get_or_exchange(key_for("another-token", &wanted), None, || async {
            client.exchange(&request(&wanted)).await
        })
        .await;
    assert!(other.0.is_ok());
    assert_eq!(idp.calls(), 2);
}

#[tokio::test]
async fn refusals_are_not_held() {
    let idp = TestEndpoint::start().await;
    let client = idp.client(basic("gateway", "s"));
    let cache = CredentialCache::new(100);
    let wanted = scopes(&["a"]);
    idp.answer(400, json!({"error": "invalid_grant"}));
    let (first, _) = cached_exchange(&cache, &client, &wanted).await;
    assert_eq!(first.unwrap_err().kind(), FailureKind::Denied);
    idp.answer(200, bearer(60));
    let (second, outcome) = cached_exchange(&cache, &client, &wanted).await;
    assert!(second.is_ok());
    assert_eq!(outcome, CacheOutcome::Miss);
    assert_eq!(idp.calls(), 2);
}

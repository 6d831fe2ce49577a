//! Criterion micro-benchmarks of the gateway's per-request steps: what one request costs
//! in authentication, inspection and authorization, the credential cache, and session
//! sealing, without the network or Pingora around them. See docs/MICROBENCHMARKS.md.
//!
//! ```sh
//! CARGO_TARGET_DIR=target/microbench cargo bench --bench hot_path
//! CARGO_TARGET_DIR=target/microbench cargo bench --bench hot_path -- authenticate/
//! ```
//!
//! Groups (the first four names are the issues' targets):
//! - `authenticate/cached_token`: the same valid token again and again (token cache hit).
//! - `authenticate/uncached_rs256`, `authenticate/uncached_es256`: a token never seen
//!   before on every iteration (signature verification, claim checks, cache insert).
//! - `inspect_authorize/1KiB_tools_call`, `inspect_authorize/256KiB_tools_call`: strict
//!   JSON-RPC inspection of a `tools/call` body plus the policy decision.
//! - `exchange_cache/hit`: the credential step when the upstream token is cached.
//! - `session/seal_and_open`: seal an upstream session id, then open it again.
//! - `breakdown/*`: pieces of the above, to explain where the time goes (no targets):
//!   `bearer_token_rs256`, `sha256_rs256_token`, `inspect_only_1KiB`, `authorize_only`,
//!   `seal_only`, `open_only`.
//!
//! The issuer is a tiny axum server on loopback serving OIDC discovery and a JWKS with one
//! RSA-2048 and one EC P-256 key; the bench signs its own tokens before timing starts.
//!
//! Clock: wall time by default, as criterion always measures. `HOT_PATH_CLOCK=cpu` measures
//! the benchmark thread's CPU time instead (`CLOCK_THREAD_CPUTIME_ID`), which time spent
//! preempted by other processes does not inflate: use it on a shared machine. Every step
//! measured here runs on the benchmark thread and never blocks, so on an idle machine the
//! two clocks agree. Criterion stores results by benchmark name only, so its "change since
//! last run" line compares across clocks when they alternate: name baselines per clock
//! (`-- --save-baseline cpu`, `-- --baseline cpu`) to compare like with like.

use std::cell::RefCell;
use std::hint::black_box;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{Criterion, Throughput};
use http::{header::AUTHORIZATION, HeaderMap, HeaderValue};
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256,
};
use rsa::pkcs8::EncodePrivateKey;
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use serde_json::{json, Value};

use drawbridge::auth::{bearer, Authenticator, RouteGuard};
use drawbridge::exchange::{
    instant_at_unix, subject_token_hash, CacheKey, CredentialCache, ExchangeError, IssuedToken,
};
use drawbridge::mcp::arguments::CallArguments;
use drawbridge::mcp::jsonrpc::inspect;
use drawbridge::mcp::session::{self, Binding, SessionKeys};
use drawbridge::policy::arguments::{
    ArgumentName, ArgumentRule, ArgumentRules, Condition, Presence,
};
use drawbridge::policy::{
    authorize, authorize_calls, CallRules, EntryKind, EntryRules, Glob, Policy, Rule, RuleSet,
};
use drawbridge::telemetry::Metrics;

/// The route's `public_url`: every token's audience.
const AUDIENCE: &str = "https://mcp.example.com/mcp";
/// Distinct fresh tokens per algorithm. Each is verified at most once per authenticator;
/// the uncached benchmarks start a new authenticator (untimed) when the pool runs out.
const RS256_POOL: usize = 8192;
const ES256_POOL: usize = 8192;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

// ---- the issuer ------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Alg {
    RS256,
    ES256,
}

/// Signing keys of the bench issuer; the public halves are served by [`serve_issuer`].
struct IssuerKeys {
    rsa: RsaKeyPair,
    rsa_jwk: Value,
    ec: EcdsaKeyPair,
    rng: SystemRandom,
}

impl IssuerKeys {
    fn generate() -> IssuerKeys {
        let rng = SystemRandom::new();
        let rsa_key = RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("RSA key");
        let rsa_jwk = json!({
            "kty": "RSA", "kid": "rsa-1", "use": "sig", "alg": "RS256",
            "n": b64url(&rsa_key.n().to_bytes_be()),
            "e": b64url(&rsa_key.e().to_bytes_be()),
        });
        let der = rsa_key.to_pkcs8_der().expect("RSA PKCS#8");
        let rsa = RsaKeyPair::from_pkcs8(der.as_bytes()).expect("ring RSA key");
        let ec_pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("EC key");
        let ec =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, ec_pkcs8.as_ref(), &rng)
                .expect("ring EC key");
        IssuerKeys {
            rsa,
            rsa_jwk,
            ec,
            rng,
        }
    }

    fn jwks(&self) -> Value {
        // ring's P-256 public key is the uncompressed point 0x04 || x || y.
        let point = self.ec.public_key().as_ref();
        json!({ "keys": [
            self.rsa_jwk,
            {
                "kty": "EC", "crv": "P-256", "kid": "ec-1", "use": "sig", "alg": "ES256",
                "x": b64url(&point[1..33]),
                "y": b64url(&point[33..65]),
            },
        ]})
    }

    /// A compact JWS access token (RFC 9068 shape) with a distinct `jti`.
    fn mint(&self, alg: Alg, issuer: &str, jti: usize, now: u64) -> String {
        let (name, kid) = match alg {
            Alg::RS256 => ("RS256", "rsa-1"),
            Alg::ES256 => ("ES256", "ec-1"),
        };
        let header = json!({ "alg": name, "kid": kid, "typ": "at+jwt" });
        let claims = json!({
            "iss": issuer,
            "sub": "248289761001",
            "aud": AUDIENCE,
            "exp": now + 3600,
            "iat": now,
            "scope": "mcp:tools tools:echo tools:read",
            "client_id": "agent-cli",
            "jti": format!("bench-{jti:08}"),
        });
        let input = format!(
            "{}.{}",
            b64url(&serde_json::to_vec(&header).expect("header")),
            b64url(&serde_json::to_vec(&claims).expect("claims"))
        );
        let signature = match alg {
            Alg::RS256 => {
                let mut sig = vec![0; self.rsa.public().modulus_len()];
                self.rsa
                    .sign(&RSA_PKCS1_SHA256, &self.rng, input.as_bytes(), &mut sig)
                    .expect("RS256 signature");
                sig
            }
            Alg::ES256 => self
                .ec
                .sign(&self.rng, input.as_bytes())
                .expect("ES256 signature")
                .as_ref()
                .to_vec(),
        };
        format!("{input}.{}", b64url(&signature))
    }

    /// `count` distinct tokens as `Authorization` headers, signed on every core.
    fn mint_pool(&self, alg: Alg, issuer: &str, count: usize, now: u64) -> Vec<HeaderMap> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let per = count.div_ceil(threads);
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    s.spawn(move || {
                        (t * per..((t + 1) * per).min(count))
                            .map(|jti| bearer(&self.mint(alg, issuer, jti, now)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("minting thread"))
                .collect()
        })
    }
}

fn bearer(token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).expect("header value"),
    );
    headers
}

/// Serves discovery and the JWKS on loopback from a thread of its own (so the measured
/// runtime has nothing else to do); returns the issuer URL. Runs until the process exits.
fn serve_issuer(jwks: Value) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind issuer");
    listener.set_nonblocking(true).expect("nonblocking");
    let issuer = format!("http://{}", listener.local_addr().expect("addr"));
    let metadata = json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/jwks"),
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    });
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("issuer runtime");
        rt.block_on(async move {
            let app = axum::Router::new()
                .route(
                    "/.well-known/openid-configuration",
                    axum::routing::get(move || {
                        let m = metadata.clone();
                        async move { axum::Json(m) }
                    }),
                )
                .route(
                    "/jwks",
                    axum::routing::get(move || {
                        let k = jwks.clone();
                        async move { axum::Json(k) }
                    }),
                );
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            axum::serve(listener, app).await.expect("issuer server");
        });
    });
    issuer
}

// ---- authenticate ----------------------------------------------------------------------

struct AuthEnv {
    config: drawbridge::config::Config,
    guard: RouteGuard,
}

impl AuthEnv {
    fn new(issuer: &str) -> AuthEnv {
        let yaml = format!(
            "listen: 127.0.0.1:0\n\
             issuers:\n  - name: corp\n    issuer: {issuer}\n\
             routes:\n  - name: bench\n    match: {{ path: /mcp }}\n    public_url: {AUDIENCE}\n    \
             upstream: {{ url: 'http://127.0.0.1:9/mcp' }}\n    \
             auth: {{ issuers: [corp], required_scopes: [mcp:tools] }}\n"
        );
        let loaded = drawbridge::config::load_str("bench.yaml", &yaml).unwrap_or_else(|errors| {
            for e in &errors {
                eprintln!("{e}");
            }
            panic!("bench gateway.yaml does not load");
        });
        let guard = RouteGuard::for_route(&loaded.config.routes[0]).expect("a protected route");
        AuthEnv {
            config: loaded.config,
            guard,
        }
    }

    /// A new authenticator (empty token cache) with the issuer's keys fetched.
    async fn authenticator(&self) -> Authenticator {
        let metrics = Metrics::new().expect("metrics");
        let auth = Authenticator::new(&self.config, &metrics, None).expect("authenticator");
        auth.issuers()[0].refresh().await.expect("discovery + JWKS");
        auth
    }
}

/// Times `iters` first-time verifications, each of a token the current authenticator has
/// never seen; a fresh authenticator (untimed) takes over when the pool is used up.
async fn time_uncached<M: Clock>(
    env: &AuthEnv,
    pool: &[HeaderMap],
    state: &RefCell<Option<(Authenticator, usize)>>,
    iters: u64,
) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters as usize;
    while left > 0 {
        let current = state.borrow_mut().take();
        let (auth, next) = match current {
            Some((auth, next)) if next < pool.len() => (auth, next),
            stale => {
                drop(stale);
                (env.authenticator().await, 0)
            }
        };
        let n = left.min(pool.len() - next);
        let start = M::read();
        for headers in &pool[next..next + n] {
            let authenticated = authenticate(&auth, &env.guard, headers).await;
            black_box(authenticated.expect("a valid token"));
        }
        total += M::read().saturating_sub(start);
        left -= n;
        *state.borrow_mut() = Some((auth, next + n));
    }
    total
}

/// Step 2 as the request path runs it: the bearer token taken from the headers, then
/// verified for the route.
async fn authenticate(
    auth: &Authenticator,
    guard: &RouteGuard,
    headers: &HeaderMap,
) -> Result<drawbridge::auth::Authenticated, drawbridge::auth::AuthFailure> {
    let token = bearer::bearer_token(headers, &Default::default())
        .map_err(drawbridge::auth::AuthFailure::Bearer)?;
    auth.authenticate_token(guard, token).await
}

fn bench_authenticate<M: Clock>(c: &mut Criterion<M>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("bench runtime");
    let keys = IssuerKeys::generate();
    let issuer = serve_issuer(keys.jwks());
    let env = AuthEnv::new(&issuer);
    let now = unix_now();

    let mut group = c.benchmark_group("authenticate");

    // One token, verified once before timing: every timed call is a token-cache hit.
    let cached = rt.block_on(env.authenticator());
    let headers = bearer(&keys.mint(Alg::RS256, &issuer, usize::MAX, now));
    rt.block_on(authenticate(&cached, &env.guard, &headers))
        .expect("the cached token is valid");
    group.bench_function("cached_token", |b| {
        b.to_async(&rt).iter(|| async {
            authenticate(&cached, &env.guard, black_box(&headers))
                .await
                .expect("a valid token")
        })
    });

    group.sample_size(20);
    for (name, alg, size) in [
        ("uncached_rs256", Alg::RS256, RS256_POOL),
        ("uncached_es256", Alg::ES256, ES256_POOL),
    ] {
        let state = Rc::new(RefCell::new(None));
        // Minted on first use, so that a filtered run (`-- session`) does not pay for it.
        let pool_cell = OnceLock::new();
        group.bench_function(name, |b| {
            let pool = pool_cell.get_or_init(|| {
                let started = Instant::now();
                let pool = keys.mint_pool(alg, &issuer, size, now);
                eprintln!(
                    "minted {size} tokens for {name} in {:.1?}",
                    started.elapsed()
                );
                pool
            });
            b.to_async(&rt).iter_custom(|iters| {
                let state = state.clone();
                let env = &env;
                async move { time_uncached::<M>(env, pool, &state, iters).await }
            })
        });
    }
    group.finish();

    // The two steps of a cache hit that scale with the token's length.
    let mut group = c.benchmark_group("breakdown");
    group.bench_function("bearer_token_rs256", |b| {
        b.iter(|| {
            bearer::bearer_token(black_box(&headers), &Default::default()).expect("a bearer token")
        })
    });
    let token = bearer::bearer_token(&headers, &Default::default())
        .expect("a bearer token")
        .to_string();
    group.bench_function("sha256_rs256_token", |b| {
        b.iter(|| subject_token_hash(black_box(&token)))
    });
    group.finish();
}

// ---- inspect + authorize ---------------------------------------------------------------

/// Four tool rules, default deny: the shape of a small real policy.
fn four_rule_policy() -> Policy {
    let rule = |glob: &str, scope: &str| Rule {
        glob: Glob::new(glob),
        scopes: vec![scope.to_string()],
        claims: vec![],
    };
    let (tools, ambiguous) = RuleSet::new(vec![
        rule("echo", "tools:echo"),
        rule("add", "tools:math"),
        rule("get-*", "tools:read"),
        rule("files/*", "tools:files"),
    ]);
    assert!(ambiguous.is_empty());
    Policy {
        default_allow: false,
        tools,
        ..Policy::default()
    }
}

/// [`four_rule_policy`] with argument rules on `get-*` that the body of
/// [`tools_call_body`] satisfies: a `one_of`, `min` and `max`, two `max_length`, `each`
/// item `one_of`, a `regex`, and `additional_arguments: deny`.
fn argument_rule_policy() -> Policy {
    let mut policy = four_rule_policy();
    let rule = |name: &str, conditions: Vec<Condition>| ArgumentRule {
        name: ArgumentName::parse(name).expect("a valid name"),
        presence: Presence::Required,
        conditions,
        shadow: false,
    };
    let mut call_rules = CallRules::default();
    call_rules.insert(
        EntryKind::Tools,
        "get-*",
        EntryRules {
            arguments: ArgumentRules {
                rules: vec![
                    rule(
                        "city",
                        vec![Condition::regex("[A-Z][a-z]+").expect("a valid regex")],
                    ),
                    rule(
                        "units",
                        vec![Condition::OneOf(vec![json!("metric"), json!("imperial")])],
                    ),
                    rule("days", vec![Condition::Min(1.0), Condition::Max(16.0)]),
                    rule(
                        "include",
                        vec![
                            Condition::MaxLength(5),
                            Condition::Each(vec![Condition::OneOf(vec![
                                json!("wind"),
                                json!("rain"),
                                json!("uv"),
                                json!("temperature"),
                            ])]),
                        ],
                    ),
                    rule("notes", vec![Condition::MaxLength(1 << 20)]),
                ],
                deny_additional: true,
                exempt: &[],
            },
            shadow: false,
        },
    );
    policy.call_rules = call_rules;
    policy
}

/// A `tools/call` of `get-forecast` (matched by the glob rule, after two more specific
/// rules are tried) whose arguments are padded with escaped text to exactly `total` bytes.
fn tools_call_body(total: usize) -> Vec<u8> {
    let head = r#"{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"get-forecast","arguments":{"city":"Lisbon","units":"metric","days":5,"include":["wind","rain","uv"],"notes":""#;
    let tail = r#""},"_meta":{"progressToken":"p-42"}}}"#;
    let line = r#"Planner note: check the \"feels like\" temperature, wind gusts and rain. "#;
    let fill = total - head.len() - tail.len();
    let mut body = String::with_capacity(total);
    body.push_str(head);
    while body.len() + line.len() <= head.len() + fill {
        body.push_str(line);
    }
    while body.len() < head.len() + fill {
        body.push('.');
    }
    body.push_str(tail);
    assert_eq!(body.len(), total);
    body.into_bytes()
}

fn bench_inspect_authorize<M: Clock>(c: &mut Criterion<M>) {
    let policy = four_rule_policy();
    let granted: Vec<String> = ["mcp:tools", "tools:echo", "tools:read"]
        .map(String::from)
        .to_vec();
    let mut group = c.benchmark_group("inspect_authorize");
    for (name, size) in [("1KiB_tools_call", 1024), ("256KiB_tools_call", 256 * 1024)] {
        let body = tools_call_body(size);
        let inspected = inspect(&body).expect("a valid body");
        assert!(authorize(Some(&policy), &granted, Some(&inspected))
            .0
            .is_ok());
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                let inspected = inspect(black_box(&body)).expect("a valid body");
                let (permit, verdicts) = authorize(Some(&policy), &granted, Some(&inspected));
                black_box(&verdicts);
                permit.expect("permitted")
            })
        });
    }
    // The same, with argument rules on the tool: what reading the arguments strictly and
    // judging them adds per call.
    let ruled = argument_rule_policy();
    for (name, size) in [
        ("1KiB_tools_call_argument_rules", 1024),
        ("256KiB_tools_call_argument_rules", 256 * 1024),
    ] {
        let body = tools_call_body(size);
        let judge = |body: &[u8]| {
            let inspected = inspect(body).expect("a valid body");
            let arguments = CallArguments::new(body);
            let (permit, verdicts, _) =
                authorize_calls(Some(&ruled), &granted, Some(&inspected), &|i, h| {
                    arguments.of(i, h)
                });
            black_box(&verdicts);
            permit.expect("permitted")
        };
        judge(&body);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(name, |b| b.iter(|| judge(black_box(&body))));
    }
    group.finish();

    // Wide objects (duplicate-key detection) and long batches must cost linear time: a
    // 15,000-member object once took 2.7 s. Compare the per-element time across sizes.
    let mut group = c.benchmark_group("inspect_width");
    group.sample_size(10);
    for n in [1_000usize, 15_000] {
        let members: Vec<String> = (0..n).map(|i| format!(r#""k{i}":{i}"#)).collect();
        let wide = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{{{}}}}}}}"#,
            members.join(",")
        );
        let escaped = wide.replace("\"k", "\"\\u006b");
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("wide_object_{n}"), |b| {
            b.iter(|| inspect(black_box(wide.as_bytes())).expect("a valid body"))
        });
        group.bench_function(format!("wide_object_escaped_keys_{n}"), |b| {
            b.iter(|| inspect(black_box(escaped.as_bytes())).expect("a valid body"))
        });
    }
    group.finish();

    let body = tools_call_body(1024);
    let inspected = inspect(&body).expect("a valid body");
    let mut group = c.benchmark_group("breakdown");
    group.bench_function("inspect_only_1KiB", |b| {
        b.iter(|| inspect(black_box(&body)).expect("a valid body"))
    });
    group.bench_function("authorize_only", |b| {
        b.iter(|| {
            let (permit, verdicts) =
                authorize(Some(&policy), &granted, Some(black_box(&inspected)));
            black_box(&verdicts);
            permit.expect("permitted")
        })
    });
    group.finish();
}

// ---- list filtering ---------------------------------------------------------------------

/// Filtering a 100-tool `tools/list` answer (JSON) with a four-rule policy (target < 50 us),
/// alone and as one event of a stream.
fn bench_list_filter<M: Clock>(c: &mut Criterion<M>) {
    use drawbridge::mcp::filter::{filter_message, ListKind};
    use drawbridge::mcp::stream::{Hooks, SseFilter};
    use drawbridge::policy::Operation;
    let policy = four_rule_policy();
    let granted: Vec<String> = ["mcp:tools", "tools:echo"].map(String::from).to_vec();
    let tools: Vec<String> = (0..100)
        .map(|i| {
            let name = if i % 10 == 0 { "echo".to_string() } else { format!("tool-{i}") };
            format!(
                r#"{{"name":"{name}","description":"Tool number {i}, which does something useful.","inputSchema":{{"type":"object","properties":{{"message":{{"type":"string"}}}},"required":["message"]}}}}"#
            )
        })
        .collect();
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":7,"result":{{"tools":[{}],"nextCursor":"next"}}}}"#,
        tools.join(",")
    );
    let keep = |kind: ListKind, name: &str| {
        kind == ListKind::Tools && policy.visible(&granted, Operation::Tool(name))
    };
    let mut group = c.benchmark_group("list_filter");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("100_tools_json", |b| {
        b.iter(|| {
            let out = filter_message(black_box(&body), &keep).expect("filtered");
            black_box(out)
        })
    });
    // The same answer as one event of a stream: reading, filtering and re-rendering it.
    let event = format!("id: 1\nevent: message\ndata: {body}\n\n");
    let endpoint = |_: &str| None;
    let errors = Vec::new;
    group.bench_function("100_tools_sse", |b| {
        b.iter(|| {
            let mut filter = SseFilter::new(1 << 20);
            let hooks = Hooks {
                keep: Some(&keep),
                seal_state: None,
                tasks: None,
                pinned: None,
                endpoint: &endpoint,
                error_messages: &errors,
            };
            let out = filter.push(black_box(event.as_bytes()), false, &hooks);
            assert!(out.failure.is_none());
            black_box(out)
        })
    });
    group.finish();
}

// ---- exchange cache --------------------------------------------------------------------

fn bench_exchange_cache<M: Clock>(c: &mut Criterion<M>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("bench runtime");
    let cache = CredentialCache::new(10_000);
    let route: Arc<str> = Arc::from("bench");
    let audience: Option<Arc<str>> = Some(Arc::from("everything-server"));
    let subject = subject_token_hash("an inbound access token");
    let scopes = vec!["tools:read".to_string(), "mcp:tools".to_string()];
    let subject_exp = unix_now() as i64 + 3600;
    let key = || CacheKey::exchange(route.clone(), subject, &scopes, audience.clone(), None);

    let (first, _) = rt.block_on(cache.get_or_exchange(
        key(),
        Some(instant_at_unix(subject_exp)),
        || async { IssuedToken::new("upstream-token", Instant::now() + Duration::from_secs(3600)) },
    ));
    first.expect("pre-populated");

    // What the proxy's credential step does on a hit: build the key (scopes sorted and
    // deduplicated), convert the subject's expiry, look up.
    c.benchmark_group("exchange_cache")
        .bench_function("hit", |b| {
            b.to_async(&rt).iter(|| async {
                let (token, outcome) = cache
                    .get_or_exchange(
                        key(),
                        Some(instant_at_unix(black_box(subject_exp))),
                        || async {
                            Err::<IssuedToken, _>(ExchangeError::InvalidResponse("not a hit"))
                        },
                    )
                    .await;
                black_box(outcome);
                token.expect("a cache hit")
            })
        });
}

// ---- sessions --------------------------------------------------------------------------

fn bench_session<M: Clock>(c: &mut Criterion<M>) {
    let secret = SessionKeys::decode_key(&session::generate_key().expect("key")).expect("key");
    let keys = SessionKeys::new(vec![("k1".to_string(), secret)]).expect("keys");
    let binding = Binding {
        route: "everything",
        issuer: "https://idp.example.com/realms/corp",
        subject: "248289761001",
        client_id: Some("agent-cli"),
    };
    // A typical upstream id: a UUID.
    let upstream = "3f1c2d9e-8b7a-4c65-9e21-0d4f5a6b7c8d";
    let max_age = Some(Duration::from_secs(24 * 3600));
    let now = unix_now();

    let mut group = c.benchmark_group("session");
    group.bench_function("seal_and_open", |b| {
        b.iter(|| {
            let sealed = session::seal(&keys, black_box(upstream), &binding, now).expect("sealed");
            session::open(&keys, &sealed, &binding, now, max_age).expect("opened")
        })
    });
    group.finish();

    let sealed = session::seal(&keys, upstream, &binding, now).expect("sealed");
    let mut group = c.benchmark_group("breakdown");
    group.bench_function("seal_only", |b| {
        b.iter(|| session::seal(&keys, black_box(upstream), &binding, now).expect("sealed"))
    });
    group.bench_function("open_only", |b| {
        b.iter(|| session::open(&keys, black_box(&sealed), &binding, now, max_age).expect("opened"))
    });
    group.finish();
}

// ---- clocks and main --------------------------------------------------------------------

/// A criterion measurement in [`Duration`]s that `iter_custom` bodies can read directly.
trait Clock: Measurement<Value = Duration> + 'static {
    /// Now, on this clock (any fixed origin).
    fn read() -> Duration;
}

impl Clock for WallTime {
    fn read() -> Duration {
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        ORIGIN.get_or_init(Instant::now).elapsed()
    }
}

/// CPU time of the calling thread: what the measured code itself consumed, excluding time
/// the thread sat preempted on a busy machine (cache disturbance by others still shows).
struct ThreadCpuTime;

impl Clock for ThreadCpuTime {
    fn read() -> Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }
}

impl Measurement for ThreadCpuTime {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        Self::read()
    }
    fn end(&self, start: Duration) -> Duration {
        Self::read().saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        // Nanoseconds, like wall time: reuse criterion's formatting.
        static WALL: WallTime = WallTime;
        WALL.formatter()
    }
}

/// Short runs: the benchmark machine is shared and small; the whole file takes a few
/// minutes. Command-line options (`--measurement-time`, `--sample-size`, …) override these.
fn config<M: Measurement>(measurement: M) -> Criterion<M> {
    Criterion::default()
        .with_measurement(measurement)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
        .configure_from_args()
}

fn run<M: Clock>(mut c: Criterion<M>) {
    bench_authenticate(&mut c);
    bench_inspect_authorize(&mut c);
    bench_list_filter(&mut c);
    bench_exchange_cache(&mut c);
    bench_session(&mut c);
    c.final_summary();
}

fn main() {
    match std::env::var("HOT_PATH_CLOCK").as_deref() {
        Ok("cpu") => {
            eprintln!("clock: thread CPU time (HOT_PATH_CLOCK=cpu)");
            run(config(ThreadCpuTime));
        }
        Ok("wall") | Err(_) => {
            eprintln!("clock: wall time (HOT_PATH_CLOCK=cpu measures thread CPU time)");
            run(config(WallTime));
        }
        Ok(other) => panic!("HOT_PATH_CLOCK={other}: expected `wall` or `cpu`"),
    }
}

//! The MCP listener over TLS (`tls:`): HTTP/2 and HTTP/1.1 by ALPN through the whole
//! request path, TLS 1.2 as the floor, and certificate rotation by reload without
//! dropping connections. Certificates come from a test CA made here with rcgen.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

use crate::harness::{log_when, sample, Gateway};
use crate::idp::{Alg, Idp};
use crate::upstream::Upstream;

const PING: &str = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
const RESOURCE: &str = "https://mcp.example.com/secure/mcp";

/// A test CA, and the files of a server certificate it issued, in a temp dir.
struct Pki {
    ca_key: rcgen::KeyPair,
    ca: rcgen::Certificate,
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "drawbridge test CA");
        let ca = params.self_signed(&ca_key).unwrap();
        Pki {
            ca_key,
            ca,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn ca_file(&self) -> PathBuf {
        let path = self.dir.path().join("ca.pem");
        std::fs::write(&path, self.ca.pem()).unwrap();
        path
    }

    /// A leaf for `localhost` and 127.0.0.1 with this serial: (chain PEM, key PEM, DER).
    fn leaf(&self, serial: u8) -> (String, String, Vec<u8>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[serial]));
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }

    /// Writes a leaf to `tls.crt` / `tls.key` (replacing each file whole, by rename, as
    /// a Kubernetes Secret update does) and returns its DER.
    fn install(&self, serial: u8) -> Vec<u8> {
        let (chain, key, der) = self.leaf(serial);
        self.write("tls.key", &key);
        self.write("tls.crt", &chain);
        der
    }

    fn write(&self, name: &str, text: &str) {
        let tmp = self.dir.path().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.dir.path().join(name)).unwrap();
    }

    fn tls_yaml(&self) -> String {
        format!(
            "tls:\n  cert_file: {}\n  key_file: {}\n",
            self.dir.path().join("tls.crt").display(),
            self.dir.path().join("tls.key").display()
        )
    }
}

fn https(gw: &Gateway, path: &str) -> String {
    format!("https://127.0.0.1:{}{path}", gw.port)
}

/// A client that trusts the test CA only; `h2`: offers HTTP/2 by ALPN, else HTTP/1.1
/// only.
fn client(ca_file: &Path, h2: bool) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca_file).unwrap()).unwrap();
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .timeout(Duration::from_secs(10));
    if !h2 {
        builder = builder.http1_only();
    }
    builder.build().unwrap()
}

fn route(name: &str, path: &str, upstream: &str) -> String {
    crate::harness::route(name, path, upstream)
}

/// `curl` against the gateway: (HTTP version curl used, status, body). Run as a child
/// the runtime awaits: the in-process upstream answers on this test's runtime.
async fn curl(ca_file: &Path, version_flag: &str, url: &str, body: &str) -> (String, u16, String) {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", version_flag, "--cacert"])
        .arg(ca_file)
        .args([
            "-H",
            "content-type: application/json",
            "-H",
            "accept: application/json, text/event-stream",
            "--data-binary",
            body,
            "-w",
            "\n%{http_version} %{http_code}",
            url,
        ])
        .output()
        .await
        .expect("curl is needed for this test");
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, last) = text.rsplit_once('\n').unwrap();
    let (version, status) = last.split_once(' ').unwrap();
    (
        version.to_string(),
        status.parse().unwrap(),
        body.to_string(),
    )
}

#[tokio::test]
async fn curl_speaks_http2_and_http11_to_the_tls_listener() {
    let pki = Pki::new();
    pki.install(1);
    let up = Upstream::start().await;
    let gw = Gateway::start_with(&route("r", "/r/mcp", &up.url("/mcp")), &pki.tls_yaml()).await;
    let ca = pki.ca_file();
    for (flag, want) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let (version, status, body) = curl(&ca, flag, &https(&gw, "/r/mcp"), PING).await;
        assert_eq!((version.as_str(), status), (want, 200), "{flag}: {body}");
        let answer: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(answer["result"]["method"], "ping", "{flag}: {body}");
    }
    let seen = up.seen();
    assert_eq!(seen.len(), 2);
    for request in &seen {
        assert_eq!(request.body, PING.as_bytes());
        // The upstream hears where the client came from, over TLS, as HTTP/1.1.
        assert_eq!(request.headers["x-forwarded-proto"], "https");
        assert_eq!(
            request.headers["x-forwarded-host"],
            format!("127.0.0.1:{}", gw.port)
        );
        assert_eq!(request.headers["host"], up.addr.to_string());
    }
    // Plain HTTP on the TLS port gets no answer from the proxy.
    let plain = reqwest::Client::new()
        .post(gw.url("/r/mcp"))
        .body(PING)
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");
    assert_eq!(up.seen().len(), 2);
}

/// Reads a streamed body until `needle` appears (bounded).
async fn read_until(
    stream: &mut (impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    seen: &mut String,
    needle: &str,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !seen.contains(needle) {
        let next = tokio::time::timeout_at(deadline, stream.next())
            .await
            .unwrap_or_else(|_| panic!("`{needle}` did not arrive; got {seen:?}"));
        match next {
            Some(Ok(chunk)) => seen.push_str(&String::from_utf8_lossy(&chunk)),
            other => panic!("stream ended before `{needle}`: {other:?}; got {seen:?}"),
        }
    }
}

#[tokio::test]
async fn http2_carries_event_streams_sessions_deletes_and_large_bodies() {
    let pki = Pki::new();
    pki.install(1);
    let up = Upstream::start().await;
    let gw = Gateway::start_with(&route("r", "/r/mcp", &up.url("/mcp")), &pki.tls_yaml()).await;
    let h2 = client(&pki.ca_file(), true);
    let url = https(&gw, "/r/mcp");
    let post = |body: String| {
        h2.post(&url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body)
    };

    // initialize: the upstream's session id comes back sealed.
    let init = post(
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#.into(),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(init.version(), reqwest::Version::HTTP_2);
    assert_eq!(init.status(), 200);
    let sealed = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert_ne!(sealed, "upstream-session-1");

    // A POST answered with an event stream, streamed as it comes.
    let sse =
        post(r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo"}}"#.into())
            .header("mcp-session-id", &sealed)
            .header("x-test-mode", "sse")
            .send()
            .await
            .unwrap();
    assert_eq!(sse.version(), reqwest::Version::HTTP_2);
    assert_eq!(sse.status(), 200);
    let mut events = sse.bytes_stream();
    let mut seen = String::new();
    read_until(&mut events, &mut seen, "notifications/progress").await;
    assert!(!seen.contains("\"result\""), "{seen}");
    up.release();
    read_until(&mut events, &mut seen, "\"result\"").await;

    // A GET event stream, on the same connection as the others.
    let get = h2
        .get(&url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &sealed)
        .send()
        .await
        .unwrap();
    assert_eq!(get.version(), reqwest::Version::HTTP_2);
    assert_eq!(get.status(), 200);
    let mut stream = get.bytes_stream();
    let mut got = String::new();
    read_until(&mut stream, &mut got, "list_changed").await;
    drop(stream);

    // A body over the retry buffer goes through a subrequest: it arrives whole.
    let large = format!(
        r#"{{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{{"name":"echo","arguments":{{"pad":"{}"}}}}}}"#,
        "x".repeat(200_000)
    );
    let answer = post(large.clone())
        .header("mcp-session-id", &sealed)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.version(), reqwest::Version::HTTP_2);
    assert_eq!(answer.status(), 200);
    let answer: Value = answer.json().await.unwrap();
    assert_eq!(answer["result"]["bytes"], large.len());

    // DELETE ends the session upstream.
    let delete = h2
        .delete(&url)
        .header("mcp-session-id", &sealed)
        .send()
        .await
        .unwrap();
    assert_eq!(delete.version(), reqwest::Version::HTTP_2);
    assert_eq!(delete.status(), 200);

    let seen = up.seen();
    let methods: Vec<String> = seen.iter().map(|s| s.method.to_string()).collect();
    assert_eq!(
        methods,
        ["POST", "POST", "GET", "POST", "DELETE"],
        "{methods:?}"
    );
    // Every request after initialize carried the upstream's own session id.
    for request in &seen[1..] {
        assert_eq!(request.headers["mcp-session-id"], "upstream-session-1");
        assert_eq!(request.headers["x-forwarded-proto"], "https");
    }
    assert_eq!(seen[3].body, large.as_bytes());
    assert_eq!(seen[3].headers["content-length"], large.len().to_string());
}

#[tokio::test]
async fn http2_requests_are_authenticated_and_challenged_with_the_public_url() {
    let pki = Pki::new();
    pki.install(1);
    let idp = Idp::start().await;
    let up = Upstream::start().await;
    let routes = format!(
        "  - name: secure\n    match: {{ path: /secure/mcp }}\n    public_url: {RESOURCE}\n    upstream: {{ url: '{}' }}\n    auth: {{ issuers: [corp], required_scopes: [mcp:tools] }}\n    policy:\n      default: deny\n      tools:\n        echo: [mcp:tools]\n",
        up.url("/mcp")
    );
    let extra = format!(
        "{}issuers:\n  - name: corp\n    issuer: {}\n",
        pki.tls_yaml(),
        idp.issuer
    );
    let gw = Gateway::start_with(&routes, &extra).await;
    let h2 = client(&pki.ca_file(), true);
    let url = https(&gw, "/secure/mcp");

    let refused = h2
        .post(&url)
        .header("content-type", "application/json")
        .body(PING)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.version(), reqwest::Version::HTTP_2);
    assert_eq!(refused.status(), 401);
    let challenge = refused.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.contains(
            r#"resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/secure/mcp""#
        ),
        "{challenge}"
    );
    let metadata: Value = h2
        .get(https(
            &gw,
            "/.well-known/oauth-protected-resource/secure/mcp",
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["resource"], RESOURCE);

    // A list is filtered by the policy over HTTP/2 as over HTTP/1.1.
    let token = idp.mint(Alg::RS256, &idp.claims(RESOURCE, "mcp:tools"));
    let list = h2
        .post(&url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .bearer_auth(&token)
        .body(r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(list.version(), reqwest::Version::HTTP_2);
    assert_eq!(list.status(), 200);
    let list: Value = list.json().await.unwrap();
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, ["echo"]);
    // The refused request never reached the upstream; the list did, without the token.
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].headers.get("authorization").is_none());
}

/// A TLS 1.1 ClientHello (RFC 4346), with the cipher suites TLS 1.1 clients offer.
fn tls11_client_hello() -> Vec<u8> {
    let mut hello = vec![0x03, 0x02]; // client_version TLS 1.1
    hello.extend_from_slice(&[0x42; 32]); // random
    hello.push(0); // no session id
                   // CBC suites, and the AEAD ones TLS 1.2 servers choose: refused for the version.
    let suites: [u16; 6] = [0xc02b, 0xc02f, 0xc013, 0xc014, 0x002f, 0x0035];
    hello.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        hello.extend_from_slice(&s.to_be_bytes());
    }
    hello.extend_from_slice(&[1, 0]); // compression: null
    let mut handshake = vec![1]; // client_hello
    handshake.extend_from_slice(&(hello.len() as u32).to_be_bytes()[1..]);
    handshake.extend_from_slice(&hello);
    let mut record = vec![0x16, 0x03, 0x01]; // handshake record, TLS 1.0 framing
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

#[tokio::test]
async fn tls_below_1_2_is_refused_and_1_2_and_1_3_are_served() {
    let pki = Pki::new();
    let der = pki.install(1);
    let up = Upstream::start().await;
    let gw = Gateway::start_with(&route("r", "/r/mcp", &up.url("/mcp")), &pki.tls_yaml()).await;

    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", gw.port))
        .await
        .unwrap();
    tcp.write_all(&tls11_client_hello()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the gateway kept a TLS 1.1 client waiting");
    // No ServerHello: a fatal alert, then the close. rustls answers a client whose
    // best version is TLS 1.1 with handshake_failure (40); protocol_version (70) would
    // do as well.
    assert!(!answer.is_empty(), "no alert");
    assert_eq!(answer[0], 0x15, "expected an alert record, got {answer:?}");
    assert_eq!(answer.get(5), Some(&2), "not a fatal alert: {answer:?}");
    assert!(matches!(answer.get(6), Some(40 | 70)), "{answer:?}");
    assert!(
        !answer.contains(&0x16),
        "a handshake record came back: {answer:?}"
    );

    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let served = served_certificate(gw.port, &pki.ca_file(), &[version]).await;
        assert_eq!(served, der);
    }
    assert!(up.seen().is_empty());
}

/// Handshakes with the gateway (trusting the test CA only) and returns the leaf it
/// served.
async fn served_certificate(
    port: u16,
    ca_file: &Path,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Vec<u8> {
    let tls = handshake(port, ca_file, versions, &[]).await;
    tls.get_ref().1.peer_certificates().unwrap()[0]
        .as_ref()
        .to_vec()
}

/// A completed TLS handshake with the gateway, offering `alpn`.
async fn handshake(
    port: u16,
    ca_file: &Path,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca_file).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut config = config;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.unwrap()
}

#[tokio::test]
async fn an_http2_connection_without_its_preface_is_closed_at_the_header_timeout() {
    let pki = Pki::new();
    pki.install(1);
    let up = Upstream::start().await;
    let extra = format!(
        "{}limits: {{ header_timeout: 1s, max_connections: 1 }}\n",
        pki.tls_yaml()
    );
    let gw = Gateway::start_with(&route("r", "/r/mcp", &up.url("/mcp")), &extra).await;
    let ca = pki.ca_file();
    let mut silent = handshake(gw.port, &ca, &[&rustls::version::TLS13], &[b"h2"]).await;
    assert_eq!(silent.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    // It holds the only connection slot; the gateway must take it back.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(15), silent.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the silent HTTP/2 connection was kept open");
    let metrics = gw
        .metrics_when(r#"drawbridge_client_timeouts_total{kind="header"}"#, 1.0)
        .await;
    assert_eq!(
        sample(
            &metrics,
            r#"drawbridge_client_timeouts_total{kind="header"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
    // The slot is free again: an HTTP/2 request is served.
    let answer = client(&ca, true)
        .post(https(&gw, "/r/mcp"))
        .header("content-type", "application/json")
        .body(PING)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.version(), reqwest::Version::HTTP_2);
    assert_eq!(answer.status(), 200);
    assert_eq!(up.seen().len(), 1);
}

/// Sends requests without pause until `stop`, each on `client`; counts successes and
/// failures.
fn keep_asking(
    client: reqwest::Client,
    url: String,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let mut errors = Vec::new();
        // Bounded: a few thousand at most, whatever the timing.
        for _ in 0..5_000 {
            if stop.load(Ordering::Acquire) {
                break;
            }
            let answer = client
                .post(&url)
                .header("content-type", "application/json")
                .body(PING)
                .send()
                .await;
            let outcome = match answer {
                Ok(r) if r.status() == 200 => {
                    r.bytes().await.map(|_| ()).map_err(|e| e.to_string())
                }
                Ok(r) => Err(format!("status {}", r.status())),
                Err(e) => Err(e.to_string()),
            };
            match outcome {
                Ok(()) => {
                    ok.fetch_add(1, Ordering::AcqRel);
                }
                Err(e) => {
                    failed.fetch_add(1, Ordering::AcqRel);
                    errors.push(e);
                }
            }
        }
        errors
    })
}

async fn rotation_under_load(watch: bool) {
    let pki = Pki::new();
    let first = pki.install(1);
    let up = Upstream::start().await;
    let routes = route("r", "/r/mcp", &up.url("/mcp"));
    let extra = pki.tls_yaml();
    let gw = if watch {
        Gateway::start_args(&routes, &extra, &["--watch", "100ms"]).await
    } else {
        Gateway::start_with(&routes, &extra).await
    };
    let ca = pki.ca_file();
    assert_eq!(
        served_certificate(gw.port, &ca, &[&rustls::version::TLS13]).await,
        first
    );

    // Load on kept-alive HTTP/2 and HTTP/1.1 connections, and on a new connection (new
    // handshake) per request.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let fresh = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap())
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let url = https(&gw, "/r/mcp");
    let workers: Vec<_> = [client(&ca, true), client(&ca, false), fresh]
        .into_iter()
        .map(|c| keep_asking(c, url.clone(), stop.clone(), ok.clone(), failed.clone()))
        .collect();
    let wait_for = |n: usize| {
        let ok = ok.clone();
        async move {
            for _ in 0..500 {
                if ok.load(Ordering::Acquire) >= n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("the load did not get going");
        }
    };
    wait_for(30).await;

    let second = pki.install(2);
    if !watch {
        gw.signal("-HUP");
    }
    let mut served = Vec::new();
    for _ in 0..100 {
        served = served_certificate(gw.port, &ca, &[&rustls::version::TLS13]).await;
        if served == second {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        served, second,
        "new connections must get the new certificate"
    );
    let before = ok.load(Ordering::Acquire);
    wait_for(before + 30).await;
    stop.store(true, Ordering::Release);
    let mut errors = Vec::new();
    for w in workers {
        errors.extend(w.await.unwrap());
    }
    assert_eq!(failed.load(Ordering::Acquire), 0, "{errors:?}");
    assert!(ok.load(Ordering::Acquire) >= 60);

    let metrics = gw.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            r#"drawbridge_config_reloads_total{result="success"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
    let log = gw.log();
    assert!(log.contains("\"serial\":\"02\""), "{log}");
}

#[tokio::test]
async fn a_certificate_rotated_with_sighup_reaches_new_connections_without_failures() {
    rotation_under_load(false).await;
}

#[tokio::test]
async fn a_certificate_rotated_on_disk_is_picked_up_by_watch() {
    rotation_under_load(true).await;
}

#[tokio::test]
async fn a_bad_new_certificate_is_refused_and_the_old_one_stays() {
    let pki = Pki::new();
    let first = pki.install(1);
    let up = Upstream::start().await;
    let gw = Gateway::start_with(&route("r", "/r/mcp", &up.url("/mcp")), &pki.tls_yaml()).await;
    let ca = pki.ca_file();

    // A key that is not the certificate's: refused, named, the old pair served.
    let (chain, _, _) = pki.leaf(2);
    let (_, other_key, _) = pki.leaf(3);
    pki.write("tls.crt", &chain);
    pki.write("tls.key", &other_key);
    gw.signal("-HUP");
    let metrics = gw
        .metrics_when(r#"drawbridge_config_reloads_total{result="failure"}"#, 1.0)
        .await;
    assert_eq!(
        sample(
            &metrics,
            r#"drawbridge_config_reloads_total{result="failure"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
    // The log line is written beside the count, not before it: wait for it.
    let log = log_when(&gw, |l| l.contains("does not match the certificate")).await;
    assert!(
        log.contains("tls.key_file") && log.contains("does not match the certificate"),
        "{log}"
    );
    assert!(!log.contains("PRIVATE KEY"), "{log}");
    assert_eq!(
        served_certificate(gw.port, &ca, &[&rustls::version::TLS13]).await,
        first
    );

    // Removing the tls block needs a restart: refused too.
    pki.install(4);
    gw.reload_with(&route("r", "/r/mcp", &up.url("/mcp")), "");
    let metrics = gw
        .metrics_when(r#"drawbridge_config_reloads_total{result="failure"}"#, 2.0)
        .await;
    assert_eq!(
        sample(
            &metrics,
            r#"drawbridge_config_reloads_total{result="failure"}"#
        ),
        Some(2.0)
    );
    assert!(gw
        .log()
        .contains("cannot be added or removed without a restart"));
    assert_eq!(
        served_certificate(gw.port, &ca, &[&rustls::version::TLS13]).await,
        first
    );
    // Still serving requests.
    let answer = client(&ca, true)
        .post(https(&gw, "/r/mcp"))
        .header("content-type", "application/json")
        .body(PING)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let expiry = sample(
        &gw.metrics().await,
        "drawbridge_tls_certificate_expiry_timestamp_seconds",
    )
    .unwrap();
    assert!(expiry > 1.7e9, "{expiry}");
}

#[tokio::test]
async fn a_stalled_http2_request_body_gets_408_at_the_body_timeout() {
    let pki = Pki::new();
    pki.install(1);
    let up = Upstream::start().await;
    let extra = format!("{}limits: {{ body_timeout: 1s }}\n", pki.tls_yaml());
    let gw = Gateway::start_with(&route("r", "/r/mcp", &up.url("/mcp")), &extra).await;
    // The first bytes of a body, then nothing: the stream never ends.
    let stalled = futures_util::stream::once(async {
        Ok::<_, std::io::Error>(bytes::Bytes::from_static(br#"{"jsonrpc":"2.0","#))
    })
    .chain(futures_util::stream::pending());
    let answer = client(&pki.ca_file(), true)
        .post(https(&gw, "/r/mcp"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stalled))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.version(), reqwest::Version::HTTP_2);
    assert_eq!(answer.status(), 408);
    assert!(up.seen().is_empty());
    assert_eq!(up.connections(), 0);
}

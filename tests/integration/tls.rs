//! https upstreams: certificates are verified (system roots by default, or the route's
//! `tls.ca_file`), and SNI carries the upstream URL's host.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

use crate::harness::{sample, Gateway};

/// A one-answer HTTPS server with a certificate signed by its own CA.
struct TlsUpstream {
    addr: SocketAddr,
    ca_pem: String,
    sni: Arc<Mutex<Vec<Option<String>>>>,
    /// Bytes of HTTP received after a completed handshake, over all connections.
    received: Arc<Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn tls_upstream() -> TlsUpstream {
    tls_upstream_for("localhost").await
}

/// Like [`tls_upstream`], with a leaf certificate issued for `cert_name` only (the
/// server still listens where `localhost` resolves).
async fn tls_upstream_for(cert_name: &str) -> TlsUpstream {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec![cert_name.to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(leaf.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    // Listen where the gateway will connect for `localhost`.
    let local = ("localhost", 0).to_socket_addrs().unwrap().next().unwrap();
    let listener = tokio::net::TcpListener::bind(local).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sni = Arc::new(Mutex::new(Vec::new()));
    let seen = sni.clone();
    let received = Arc::new(Mutex::new(Vec::new()));
    let got = received.clone();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let seen = seen.clone();
            let got = got.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let name = tls.get_ref().1.server_name().map(str::to_string);
                seen.lock().unwrap().push(name);
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !String::from_utf8_lossy(&buf).contains("\"method\"") {
                    match tls.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            buf.extend_from_slice(&chunk[..n]);
                            got.lock().unwrap().extend_from_slice(&chunk[..n]);
                        }
                    }
                }
                let body = r#"{"jsonrpc":"2.0","id":1,"result":{"tls":true}}"#;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(resp.as_bytes()).await;
                let _ = tls.flush().await;
            });
        }
    });
    TlsUpstream {
        addr,
        ca_pem: ca.pem(),
        sni,
        received,
        task,
    }
}

fn https_route(port: u16, ca_file: Option<&std::path::Path>) -> String {
    let tls = ca_file
        .map(|p| format!("      tls: {{ ca_file: {} }}\n", p.display()))
        .unwrap_or_default();
    format!("  - name: secure\n    match: {{ path: /secure/mcp }}\n    upstream:\n      url: https://localhost:{port}/mcp\n{tls}")
}

const PING: &str = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;

#[tokio::test]
async fn https_upstream_signed_by_the_configured_ca_works_with_sni() {
    let up = tls_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &up.ca_pem).unwrap();
    let gw = Gateway::start(&https_route(up.addr.port(), Some(&ca))).await;
    let resp = crate::harness::client()
        .post(gw.url("/secure/mcp"))
        .body(PING)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", gw.log());
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["result"]["tls"], true);
    assert_eq!(
        up.sni.lock().unwrap().as_slice(),
        [Some("localhost".to_string())]
    );
}

#[tokio::test]
async fn https_upstream_with_an_untrusted_certificate_is_refused() {
    let up = tls_upstream().await;
    let gw = Gateway::start(&https_route(up.addr.port(), None)).await;
    let resp = crate::harness::client()
        .post(gw.url("/secure/mcp"))
        .body(PING)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    let m = gw
        .metrics_when(
            r#"drawbridge_upstream_errors_total{kind="tls",route="secure"}"#,
            1.0,
        )
        .await;
    assert_eq!(
        sample(
            &m,
            r#"drawbridge_upstream_errors_total{kind="tls",route="secure"}"#
        ),
        Some(1.0),
        "{m}"
    );
    assert!(
        up.received.lock().unwrap().is_empty(),
        "an upstream whose certificate failed got a request"
    );
}

#[tokio::test]
async fn https_upstream_with_a_certificate_for_another_name_is_refused() {
    // Signed by the configured CA, so only the hostname check can refuse it.
    let up = tls_upstream_for("not-the-upstream.example").await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &up.ca_pem).unwrap();
    let gw = Gateway::start(&https_route(up.addr.port(), Some(&ca))).await;
    let resp = crate::harness::client()
        .post(gw.url("/secure/mcp"))
        .body(PING)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502, "{}", gw.log());
    let m = gw
        .metrics_when(
            r#"drawbridge_upstream_errors_total{kind="tls",route="secure"}"#,
            1.0,
        )
        .await;
    assert_eq!(
        sample(
            &m,
            r#"drawbridge_upstream_errors_total{kind="tls",route="secure"}"#
        ),
        Some(1.0),
        "{m}"
    );
    assert!(
        up.received.lock().unwrap().is_empty(),
        "an upstream whose certificate names another host got a request: {:?}",
        String::from_utf8_lossy(&up.received.lock().unwrap())
    );
}

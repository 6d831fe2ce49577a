//! `tls`: the listener's certificate and key files, checked with positions.

use super::*;

fn checked(text: &str) -> Result<Loaded, Vec<String>> {
    validate("gw.yaml", text).map_err(|errors| errors.iter().map(ToString::to_string).collect())
}

/// A self-signed pair for `localhost` in a temp dir: (dir, cert path, key path).
fn pair() -> (tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let cert_path = dir.path().join("tls.crt");
    let key_path = dir.path().join("tls.key");
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let show = |p: std::path::PathBuf| p.display().to_string();
    (dir, show(cert_path), show(key_path))
}

fn with_tls(cert: &str, key: &str, public_url: &str) -> String {
    format!(
        "\
listen: 127.0.0.1:8443
tls:
  cert_file: {cert}
  key_file: {key}
routes:
  - name: r
    match: {{ path: /mcp }}
    public_url: {public_url}
    upstream: {{ url: http://127.0.0.1:3001/mcp }}
"
    )
}

#[test]
fn a_good_pair_is_loaded_and_both_files_are_watched() {
    let (_dir, cert, key) = pair();
    let loaded = checked(&with_tls(&cert, &key, "https://mcp.example.com/mcp")).unwrap();
    let tls = loaded.config.tls.as_ref().unwrap();
    assert_eq!(tls.cert_file.display().to_string(), cert);
    assert_eq!(tls.certificate.certified_key().cert.len(), 1);
    for file in [&cert, &key] {
        assert!(
            loaded
                .files
                .iter()
                .any(|f| f.display().to_string() == *file),
            "{file} is not watched: {:?}",
            loaded.files
        );
    }
    assert!(
        !loaded.warnings.iter().any(|w| w.contains("tls")),
        "{:?}",
        loaded.warnings
    );
    let plain = checked(
        &with_tls(&cert, &key, "https://mcp.example.com/mcp").replace(
            &format!("tls:\n  cert_file: {cert}\n  key_file: {key}\n"),
            "",
        ),
    )
    .unwrap();
    assert!(plain.config.tls.is_none());
}

#[test]
fn both_files_are_required_and_errors_have_positions() {
    let text = "listen: 127.0.0.1:8443\ntls:\n  cert_file: /x.crt\nroutes:\n  - name: r\n    match: { path: /mcp }\n    upstream: { url: http://127.0.0.1:3001/mcp }\n";
    let errs = checked(text).unwrap_err();
    assert!(
        errs.iter()
            .any(|e| e.contains("gw.yaml:3:") && e.contains("tls: the key `key_file` is required")),
        "{errs:?}"
    );
    let errs = checked(&with_tls(
        "/nonexistent/tls.crt",
        "/nonexistent/tls.key",
        "https://a.example/mcp",
    ))
    .unwrap_err();
    assert!(
        errs.iter()
            .any(|e| e.contains("gw.yaml:3:") && e.contains("tls.cert_file: cannot read")),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.contains("gw.yaml:4:") && e.contains("tls.key_file: cannot read")),
        "{errs:?}"
    );
}

#[test]
fn a_key_that_is_not_the_certificates_is_refused_without_printing_it() {
    let (_dir, cert, _) = pair();
    let (_other, _, other_key) = pair();
    let errs = checked(&with_tls(&cert, &other_key, "https://a.example/mcp")).unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].contains("gw.yaml:4:"), "{errs:?}");
    assert!(errs[0].contains("tls.key_file"), "{errs:?}");
    assert!(
        errs[0].contains("does not match the certificate"),
        "{errs:?}"
    );
    assert!(!errs[0].contains("PRIVATE"), "{errs:?}");
    // The files swapped: the certificate file holds no certificate.
    let (_dir, cert, key) = pair();
    let errs = checked(&with_tls(&key, &cert, "https://a.example/mcp")).unwrap_err();
    assert!(
        errs.iter()
            .any(|e| e.contains("tls.cert_file") && e.contains("holds no PEM certificate")),
        "{errs:?}"
    );
}

#[test]
fn an_http_public_url_behind_the_tls_listener_is_warned_about() {
    let (_dir, cert, key) = pair();
    let loaded = checked(&with_tls(&cert, &key, "http://mcp.example.com/mcp")).unwrap();
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| w.contains("route `r`") && w.contains("public_url` is http:")),
        "{:?}",
        loaded.warnings
    );
    let local = checked(&with_tls(&cert, &key, "http://127.0.0.1:8443/mcp")).unwrap();
    assert!(
        !local
            .warnings
            .iter()
            .any(|w| w.contains("public_url` is http:")),
        "{:?}",
        local.warnings
    );
}

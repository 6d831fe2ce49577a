//! `drawbridge validate` and `--version`, run as a user would.

use std::process::Command;

use crate::harness::drawbridge_bin;

fn validate(yaml: &str, env: &[(&str, &str)]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.yaml");
    std::fs::write(&file, yaml).unwrap();
    let out = Command::new(drawbridge_bin())
        .arg("validate")
        .arg(&file)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).replace(&file.display().to_string(), "FILE"),
    )
}

const GOOD: &str = "listen: 127.0.0.1:8080\nadmin:\n  listen: 127.0.0.1:9090\nroutes:\n  - name: a\n    match: { path: /a/mcp }\n    upstream:\n      url: ${UPSTREAM_URL}\n";

#[test]
fn the_repository_gateway_yaml_is_valid() {
    let out = Command::new(drawbridge_bin())
        .args([
            "validate",
            concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.yaml"),
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
}

#[test]
fn good_file_prints_ok_and_warns_about_public_routes() {
    let (code, out, err) = validate(GOOD, &[("UPSTREAM_URL", "http://127.0.0.1:3001/mcp")]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "ok\n");
    assert!(err.contains("route `a` is public"), "{err}");
}

#[test]
fn unknown_key_is_an_error_with_line_column_and_path() {
    let yaml = GOOD.replace("      url:", "      retries: 3\n      url:");
    let (code, _, err) = validate(&yaml, &[("UPSTREAM_URL", "http://127.0.0.1:3001/mcp")]);
    assert_eq!(code, 2);
    assert!(
        err.starts_with("FILE:8:7: routes[0].upstream.retries: unknown field `retries`"),
        "{err}"
    );
}

#[test]
fn missing_env_var_is_named() {
    let (code, _, err) = validate(GOOD, &[]);
    assert_eq!(code, 2);
    assert_eq!(
        err.trim(),
        "FILE:8:12: routes[0].upstream.url: environment variable `UPSTREAM_URL` is not set"
    );
}

#[test]
fn bad_url_is_an_error() {
    let (code, _, err) = validate(GOOD, &[("UPSTREAM_URL", "not a url")]);
    assert_eq!(code, 2);
    assert!(
        err.starts_with("FILE:8:12: routes[0].upstream.url: not a valid absolute URL"),
        "{err}"
    );
    assert!(
        !err.contains("not a url"),
        "the value must not be echoed: {err}"
    );
}

#[test]
fn version_is_printed() {
    let out = Command::new(drawbridge_bin())
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn keygen_prints_a_fresh_valid_key() {
    let run = || {
        let out = Command::new(drawbridge_bin())
            .arg("keygen")
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let (a, b) = (run(), run());
    assert_ne!(a, b);
    let yaml = format!("{GOOD}sessions:\n  keys:\n    - {{ id: k1, secret: '{a}' }}\n");
    let (code, out, err) = validate(&yaml, &[("UPSTREAM_URL", "http://127.0.0.1:3001/mcp")]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "ok\n");
}

#[test]
fn human_readable_logs_to_a_file_have_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.yaml");
    let (port, admin) = (crate::harness::free_port(), crate::harness::free_port());
    std::fs::write(
        &file,
        format!(
            "listen: 127.0.0.1:{port}\nadmin:\n  listen: 127.0.0.1:{admin}\nshutdown_drain: 0s\nroutes:\n  - name: a\n    match: {{ path: /a/mcp }}\n    upstream:\n      url: http://127.0.0.1:9/mcp\n"
        ),
    )
    .unwrap();
    let log_path = dir.path().join("drawbridge.log");
    let mut child = Command::new(drawbridge_bin())
        .args(["--log-format", "pretty", "run", "--config"])
        .arg(&file)
        .env("RUST_LOG", "info")
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let mut log = String::new();
    for _ in 0..100 {
        log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if log.contains("INFO") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(log.contains("INFO"), "no log line within 5 s:\n{log}");
    assert!(
        !log.contains('\u{1b}'),
        "escape codes in a log file:\n{log:?}"
    );
}

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

/// Runs the binary with `args` in a directory holding `gateway.yaml` (GOOD with an
/// upstream) and `other.yaml` (`other`); `FILE` in an argument is the directory.
fn drawbridge_in_dir(other: &str, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let good = GOOD.replace("${UPSTREAM_URL}", "http://127.0.0.1:3001/mcp");
    std::fs::write(dir.path().join("gateway.yaml"), good).unwrap();
    std::fs::write(dir.path().join("other.yaml"), other).unwrap();
    let root = dir.path().display().to_string();
    let out = Command::new(drawbridge_bin())
        .current_dir(dir.path())
        .args(args.iter().map(|a| a.replace("DIR", &root)))
        .env_remove("DRAWBRIDGE_CONFIG")
        .envs(
            env.iter()
                .map(|(k, v)| (k.to_string(), v.replace("DIR", &root))),
        )
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).replace(&root, "DIR"),
        String::from_utf8_lossy(&out.stderr).replace(&root, "DIR"),
    )
}

const THREE_ERRORS: &str = "workers: two\nroutes:\n  - name: a\n    match: { path: /a }\n    upstream: { url: 'http://127.0.0.1:1/' }\n    allowed_origins: https://ui.internal.example\n  - name: b\n    match: { path: /b }\n    upstream: 3\n";

#[test]
fn the_config_file_comes_from_c_config_or_the_environment_on_every_form() {
    // `other.yaml` is broken, `gateway.yaml` (the default) is good: exit 2 shows which
    // file was read.
    for (args, env) in [
        (vec!["validate", "-c", "DIR/other.yaml"], vec![]),
        (vec!["validate", "--config", "DIR/other.yaml"], vec![]),
        (vec!["-c", "DIR/other.yaml", "validate"], vec![]),
        (vec!["--config", "DIR/other.yaml", "validate"], vec![]),
        (vec!["validate", "DIR/other.yaml"], vec![]),
        (
            vec!["validate"],
            vec![("DRAWBRIDGE_CONFIG", "DIR/other.yaml")],
        ),
    ] {
        let (code, _, err) = drawbridge_in_dir(THREE_ERRORS, &args, &env);
        assert_eq!(code, 2, "{args:?} {env:?}: {err}");
        assert!(
            err.starts_with("DIR/other.yaml:1:10: workers"),
            "{args:?}: {err}"
        );
    }
    // Without any, `gateway.yaml` in the working directory; `-c` wins over the variable.
    let (code, out, err) = drawbridge_in_dir(THREE_ERRORS, &["validate"], &[]);
    assert_eq!((code, out.as_str()), (0, "ok\n"), "{err}");
    let (code, out, err) = drawbridge_in_dir(
        THREE_ERRORS,
        &["validate", "-c", "gateway.yaml"],
        &[("DRAWBRIDGE_CONFIG", "DIR/other.yaml")],
    );
    assert_eq!((code, out.as_str()), (0, "ok\n"), "{err}");
    // Two different files is a mistake, said so.
    let (code, _, err) = drawbridge_in_dir(
        THREE_ERRORS,
        &["validate", "-c", "gateway.yaml", "other.yaml"],
        &[],
    );
    assert_eq!(code, 2);
    assert!(err.contains("give the file once"), "{err}");
}

#[test]
fn three_errors_are_reported_at_once_in_the_operators_words() {
    let (code, out, err) = drawbridge_in_dir(THREE_ERRORS, &["validate", "other.yaml"], &[]);
    assert_eq!(code, 2);
    assert_eq!(out, "");
    assert_eq!(
        err,
        "other.yaml:1:10: workers: expected a whole number, found text\n\
         other.yaml:6:22: routes[0].allowed_origins: expected a list, e.g. [\"https://app.example.com\"], found text\n\
         other.yaml:9:15: routes[1].upstream: expected a mapping such as `{ url: http://127.0.0.1:3001/mcp }`, found a number\n"
    );
    assert!(
        !err.contains("ui.internal"),
        "the value must not be echoed: {err}"
    );
}

#[test]
fn validate_format_json_lists_errors_and_warnings_for_ci() {
    let (code, out, err) = drawbridge_in_dir(
        THREE_ERRORS,
        &["validate", "--format", "json", "-c", "other.yaml"],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["valid"], false);
    let errors = report["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 3, "{report}");
    assert_eq!(
        errors[1],
        serde_json::json!({
            "file": "other.yaml",
            "line": 6,
            "column": 22,
            "path": "routes[0].allowed_origins",
            "message": "expected a list, e.g. [\"https://app.example.com\"], found text",
        })
    );
    let (code, out, err) = drawbridge_in_dir(THREE_ERRORS, &["validate", "--format", "json"], &[]);
    assert_eq!(code, 0, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["valid"], true);
    assert_eq!(report["errors"], serde_json::json!([]));
    let warning = &report["warnings"][0];
    assert_eq!(warning["file"], "gateway.yaml");
    assert!(
        warning["message"]
            .as_str()
            .unwrap()
            .contains("route `a` is public"),
        "{report}"
    );
}

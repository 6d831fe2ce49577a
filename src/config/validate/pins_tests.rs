//! `policy.pins` and the lock file it names.

use super::*;
use crate::policy::pins::{OnChange, PinVerdict};

const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn gateway(pins: &str) -> String {
    format!(
        "issuers:
  - name: corp
    issuer: https://idp.example.com
routes:
  - name: secure
    match: {{ path: /secure/mcp }}
    public_url: https://mcp.example.com/secure/mcp
    upstream: {{ url: 'http://127.0.0.1:3001/mcp' }}
    auth: {{ issuers: [corp] }}
    upstream_auth: {{ none: {{}} }}
    policy:
      default: allow
      pins: {pins}
"
    )
}

fn lock_dir(lock: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tools.lock");
    std::fs::write(&path, lock).unwrap();
    (dir, path.display().to_string())
}

fn errors(text: &str) -> Vec<String> {
    match validate("gw.yaml", text) {
        Ok(_) => vec![],
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn a_lock_file_is_read_and_watched_with_the_configuration() {
    let (_dir, path) = lock_dir(&format!(
        "# comment\nversion: 1\ndigest: sha256-jcs\ncreated: '2026-12-05T12:00:00Z'\nsource: test\ntools:\n  read_file: '{DIGEST}'\n"
    ));
    let loaded = validate("gw.yaml", &gateway(&format!("{{ file: '{path}' }}"))).unwrap();
    let pins = loaded.config.routes[0].pins.as_ref().unwrap();
    assert_eq!(pins.on_change, OnChange::Hide);
    assert_eq!(pins.file, path);
    assert_eq!(pins.verdict("read_file", Some(DIGEST)), PinVerdict::Matches);
    assert_eq!(pins.verdict("other", Some(DIGEST)), PinVerdict::Unpinned);
    assert!(loaded.files.contains(&std::path::PathBuf::from(&path)));
    let warn = gateway(&format!("{{ file: '{path}', on_change: warn }}"));
    let loaded = validate("gw.yaml", &warn).unwrap();
    assert_eq!(
        loaded.config.routes[0].pins.as_ref().unwrap().on_change,
        OnChange::Warn
    );
    // JSON is YAML: a lock file written as JSON reads the same.
    let (_d, json) = lock_dir(&format!(
        r#"{{"version":1,"digest":"sha256-jcs","tools":{{"read_file":"{DIGEST}"}}}}"#
    ));
    let loaded = validate("gw.yaml", &gateway(&format!("{{ file: '{json}' }}"))).unwrap();
    assert!(loaded.config.routes[0]
        .pins
        .as_ref()
        .unwrap()
        .is_pinned("read_file"));
}

#[test]
fn bad_settings_are_named() {
    let (_dir, path) = lock_dir(&format!(
        "version: 1\ndigest: sha256-jcs\ntools: {{ a: '{DIGEST}' }}\n"
    ));
    let bad = errors(&gateway(&format!(
        "{{ file: '{path}', on_change: ignore }}"
    )));
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(
        bad[0].contains("routes[0].policy.pins.on_change: must be `hide` or `warn`"),
        "{bad:?}"
    );
    let bad = errors(&gateway("{ file: /nonexistent/tools.lock }"));
    assert!(
        bad[0].contains("routes[0].policy.pins.file: cannot read the lock file"),
        "{bad:?}"
    );
    let bad = errors(&gateway("{ on_change: hide }"));
    assert!(bad.iter().any(|e| e.contains("file")), "{bad:?}");
}

#[test]
fn errors_in_the_lock_file_point_into_it() {
    let cases = [
        // A malformed digest, at its own line; the value is not echoed.
        (
            "version: 1\ndigest: sha256-jcs\ntools:\n  good: 'GOOD'\n  bad: 'sha256:NOTHEX'\n",
            ":5:",
            "tools.bad: a digest is `sha256:` and 64 lower-case hex digits",
        ),
        (
            "version: 2\ndigest: sha256-jcs\ntools: {}\n",
            ":1:",
            "lock file version 1",
        ),
        (
            "version: 1\ndigest: md5\ntools: {}\n",
            ":2:",
            "digest: must be `sha256-jcs`",
        ),
        (
            "version: 1\ndigest: sha256-jcs\nextra: 1\ntools: {}\n",
            ":3:",
            "extra",
        ),
        (
            "version: 1\ndigest: sha256-jcs\ntools: [\n",
            ":",
            "tools.lock",
        ),
    ];
    for (lock, position, message) in cases {
        let lock = lock.replace("GOOD", DIGEST);
        let (_dir, path) = lock_dir(&lock);
        let bad = errors(&gateway(&format!("{{ file: '{path}' }}")));
        let inner: Vec<&String> = bad.iter().filter(|e| e.starts_with(&path)).collect();
        assert!(
            inner
                .iter()
                .any(|e| e.contains(position) && e.contains(message)),
            "{lock}: {bad:?}"
        );
        assert!(!bad.iter().any(|e| e.contains("NOTHEX")), "{bad:?}");
        // The configuration's own error names the key that named the file.
        assert!(
            bad.iter()
                .any(|e| e.starts_with("gw.yaml:") && e.contains("policy.pins.file")),
            "{bad:?}"
        );
    }
}

#[test]
fn pinning_makes_a_missing_lock_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.lock").display().to_string();
    let text = gateway(&format!("{{ file: '{path}' }}"));
    assert!(validate("gw.yaml", &text).is_err());
    let loaded = validate_for("gw.yaml", &text, true).unwrap();
    let pins = loaded.config.routes[0].pins.as_ref().unwrap();
    assert_eq!(pins.file, path);
    assert_eq!(pins.names().count(), 0);
}

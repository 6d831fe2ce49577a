//! `gateway.yaml` loading and validation (`config::load_str`). On every input:
//! - nothing panics, however broken the YAML or the settings;
//! - a refused file gets at least one error, and every error on a non-empty file has a
//!   position inside the file (line and column, 1-based).
//!
//! Inputs naming device or process files are skipped: validation reads the files a
//! configuration names (secrets, keys), and `/dev/zero` never ends.
#![no_main]

use drawbridge::config::load_str;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if ["/dev", "/proc", "/sys"].iter().any(|p| text.contains(p)) {
        return;
    }
    let Err(errors) = load_str("fuzz.yaml", text) else {
        return;
    };
    assert!(!errors.is_empty(), "refused without an error");
    if text.trim().is_empty() {
        return;
    }
    // YAML ends a line at LF, CRLF or a lone CR, and (YAML 1.1, which the parsers
    // follow) at NEL, LINE SEPARATOR and PARAGRAPH SEPARATOR too.
    let lines = text
        .replace("\r\n", "\n")
        .split(['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}'])
        .count();
    for error in &errors {
        let Some(position) = error.position else {
            panic!("an error without a position: {error}");
        };
        assert!(
            position.line >= 1 && position.line <= lines + 1 && position.column >= 1,
            "{error}: line {} of {lines}",
            position.line
        );
    }
});

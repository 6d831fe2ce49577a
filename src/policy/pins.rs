//! Pinned tool definitions (`policy.pins`): the digest each reviewed tool's definition
//! had when it was pinned (`drawbridge pin`), and the verdict on a definition an
//! upstream lists now. Pure: the digests come from `mcp::canonical`, the lock file is
//! read by `config` and written by the CLI; what happens to a changed tool at run time
//! (hidden, its calls refused, or passed with an audit event) is the proxy's.
//!
//! The lock file is YAML (JSON is YAML too): a format `version`, when and from what it
//! was made, and per tool name its digest.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The lock file format this build reads and writes.
pub const LOCK_VERSION: u32 = 1;

/// The digest scheme of every pin: SHA-256 of the RFC 8785 canonical definition.
pub const DIGEST_SCHEME: &str = "sha256-jcs";

/// A lock file as written (`drawbridge pin`) and read (config load).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockFile {
    pub version: u32,
    /// How the digests were made; [`DIGEST_SCHEME`].
    pub digest: String,
    /// When it was made (RFC 3339, UTC); for people, not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// What it was made from (a route's upstream, a saved answer); for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Tool name → `sha256:` and 64 lower-case hex digits.
    #[serde(default)]
    pub tools: BTreeMap<String, String>,
}

const LOCK_HEADER: &str = "\
# Pinned tool definitions for drawbridge (`policy.pins`), written by `drawbridge pin`.
# Each digest is SHA-256 of the tool's canonical definition (RFC 8785: name, title,
# description, inputSchema, outputSchema, annotations). Review a tool's definition
# before you pin it; a changed definition no longer matches its pin.
";

impl LockFile {
    pub fn new(created: String, source: String, tools: BTreeMap<String, String>) -> LockFile {
        LockFile {
            version: LOCK_VERSION,
            digest: DIGEST_SCHEME.to_string(),
            created: Some(created),
            source: Some(source),
            tools,
        }
    }

    /// The file's text: a comment saying what it is, then YAML.
    pub fn render(&self) -> Result<String, serde_yaml::Error> {
        Ok(format!("{LOCK_HEADER}{}", serde_yaml::to_string(self)?))
    }
}

/// Whether `digest` is written as a pin's digest is: `sha256:` and 64 lower-case hex.
pub fn well_formed_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// What the gateway does with a listed tool whose definition is not the pinned one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnChange {
    /// Removed from lists; its calls refused.
    Hide,
    /// Passed, with an audit event and a metric.
    Warn,
}

/// A route's pins, checked at config load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolPins {
    /// The lock file, as the configuration names it (`${VAR}`s expanded).
    pub file: String,
    pub on_change: OnChange,
    digests: BTreeMap<String, String>,
}

/// The verdict on one listed tool's definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinVerdict {
    /// Its digest is its pin.
    Matches,
    /// It has a pin, and its digest differs (or it has none: unreadable).
    Changed,
    /// No pin names it.
    Unpinned,
}

impl PinVerdict {
    /// For metrics and audit.
    pub fn reason(self) -> &'static str {
        match self {
            PinVerdict::Matches => "matches",
            PinVerdict::Changed => "changed",
            PinVerdict::Unpinned => "unpinned",
        }
    }
}

/// Metric label of a tool no pin names (bounds the label's values to the lock file's).
pub const UNPINNED_LABEL: &str = "other";

impl ToolPins {
    pub fn new(file: String, on_change: OnChange, digests: BTreeMap<String, String>) -> ToolPins {
        ToolPins {
            file,
            on_change,
            digests,
        }
    }

    /// The verdict on tool `name` listed with `digest` (`None`: its definition has no
    /// canonical form, which matches no pin).
    pub fn verdict(&self, name: &str, digest: Option<&str>) -> PinVerdict {
        match self.digests.get(name) {
            None => PinVerdict::Unpinned,
            Some(pin) if digest == Some(pin.as_str()) => PinVerdict::Matches,
            Some(_) => PinVerdict::Changed,
        }
    }

    /// The pinned names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.digests.keys().map(String::as_str)
    }

    pub fn is_pinned(&self, name: &str) -> bool {
        self.digests.contains_key(name)
    }

    /// The pinned name as the lock file spells it, or [`UNPINNED_LABEL`]: a bounded label.
    pub fn label<'a>(&'a self, name: &str) -> &'a str {
        self.digests
            .get_key_value(name)
            .map_or(UNPINNED_LABEL, |(k, _)| k.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn pins() -> ToolPins {
        ToolPins::new(
            "tools.lock".into(),
            OnChange::Hide,
            BTreeMap::from([("read_file".to_string(), A.to_string())]),
        )
    }

    #[test]
    fn a_tool_matches_only_its_own_pin() {
        let pins = pins();
        assert_eq!(pins.verdict("read_file", Some(A)), PinVerdict::Matches);
        assert_eq!(pins.verdict("read_file", Some(B)), PinVerdict::Changed);
        assert_eq!(pins.verdict("read_file", None), PinVerdict::Changed);
        assert_eq!(pins.verdict("write_file", Some(A)), PinVerdict::Unpinned);
        assert_eq!(pins.verdict("READ_FILE", Some(A)), PinVerdict::Unpinned);
    }

    #[test]
    fn labels_are_pinned_names_or_other() {
        let pins = pins();
        assert_eq!(pins.label("read_file"), "read_file");
        assert_eq!(pins.label("anything else"), UNPINNED_LABEL);
        assert!(pins.is_pinned("read_file") && !pins.is_pinned("x"));
        assert_eq!(pins.names().collect::<Vec<_>>(), ["read_file"]);
    }

    #[test]
    fn digests_are_checked_for_form() {
        assert!(well_formed_digest(A));
        assert!(!well_formed_digest(&A.to_uppercase()));
        assert!(!well_formed_digest(&A[..A.len() - 1]));
        assert!(!well_formed_digest(&A.replace("sha256:", "sha512:")));
        assert!(!well_formed_digest(&A.replace('a', "g")));
    }

    #[test]
    fn a_rendered_lock_file_reads_back() {
        let lock = LockFile::new(
            "2026-12-05T12:00:00Z".into(),
            "saved answer `tools.json`".into(),
            BTreeMap::from([
                ("read_file".into(), A.into()),
                ("a: \"b\"".into(), B.into()),
            ]),
        );
        let text = lock.render().unwrap();
        assert!(text.starts_with("# Pinned tool definitions"));
        let back: LockFile = serde_yaml::from_str(&text).unwrap();
        assert_eq!(back, lock);
    }
}

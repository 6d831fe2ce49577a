//! Secrets: a configured secret ([`Secret`]) and a secret as written in `gateway.yaml`
//! ([`RawSecret`]). Each prints as `[redacted]` in `Debug` (and `Display`), so no log
//! line, error or panic message can carry it by accident; `expose` is the one way out.
//! Secrets are zeroized when dropped (copies the HTTP client makes are not). Keys are
//! held decoded by the types that use them (`jose::SigningKey`,
//! `mcp::session::SessionKeys`), whose `Debug` never shows key material.
//!
//! Owns the type only, at the crate root because `config` (which reads secrets),
//! `exchange` and `auth` (which send them) all use it. Does not own where a secret
//! comes from (`${VAR}` or a file: `config`) or where it is sent.

use std::fmt;

use serde::Deserialize;
use zeroize::Zeroize;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    /// The secret itself, for the one place that sends it (an HTTP client).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A secret as written in `gateway.yaml` (before `${VAR}` expansion): the raw config
/// model holds it in this type so that a `Debug` print of the raw model never shows it.
#[derive(Deserialize)]
#[serde(transparent)]
pub struct RawSecret(String);

impl std::ops::Deref for RawSecret {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RawSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Drop for RawSecret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_its_value() {
        let s = Secret::new("hunter2".into());
        assert!(!format!("{s:?} {s}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }
}

//! `routes[].policy.pins`: the lock file of pinned tool definitions, read and checked
//! with the configuration (and watched with it: it is one of the files the configuration
//! names). Errors inside the lock file point at the lock file's own lines.

use std::sync::Arc;

use super::structure::parse_named_file;
use super::Checker;
use crate::config::locate::{Locations, Position};
use crate::config::raw::RawPins;
use crate::config::ConfigError;
use crate::policy::pins::{
    well_formed_digest, LockFile, OnChange, ToolPins, DIGEST_SCHEME, LOCK_VERSION,
};

impl Checker<'_> {
    pub(super) fn pins(&mut self, at: &str, raw: &RawPins) -> Option<Arc<ToolPins>> {
        let on_change = match raw.on_change.as_deref() {
            None | Some("hide") => OnChange::Hide,
            Some("warn") => OnChange::Warn,
            Some(_) => {
                self.error(&format!("{at}.on_change"), "must be `hide` or `warn`");
                OnChange::Hide
            }
        };
        let path = self.expand(&format!("{at}.file"), &raw.file)?;
        let text = match self.read_text(&path) {
            Ok(text) => text,
            // `drawbridge pin` makes the file the configuration names.
            Err(e) if self.pinning && e.kind() == std::io::ErrorKind::NotFound => {
                return Some(Arc::new(ToolPins::new(path, on_change, Default::default())));
            }
            Err(e) => {
                self.error(
                    &format!("{at}.file"),
                    format!("cannot read the lock file: {e}"),
                );
                return None;
            }
        };
        match lock_file(&path, &text) {
            Ok(lock) => Some(Arc::new(ToolPins::new(path, on_change, lock.tools))),
            Err(errors) => {
                self.error(
                    &format!("{at}.file"),
                    "the lock file is not valid (see the errors in it)",
                );
                self.errors.extend(errors);
                None
            }
        }
    }
}

/// Reads a lock file's text (`file` names it in errors): the shape, the format version,
/// the digest scheme and the form of every digest.
pub(in crate::config) fn lock_file(file: &str, text: &str) -> Result<LockFile, Vec<ConfigError>> {
    let lock: LockFile = parse_named_file(file, text).map_err(|e| vec![e])?;
    let locations = Locations::of(text);
    let error = |path: &str, message: String| ConfigError {
        file: file.to_string(),
        position: Some(locations.position_of(path).unwrap_or(Position::TOP)),
        path: path.to_string(),
        message,
    };
    let mut errors = Vec::new();
    if lock.version != LOCK_VERSION {
        errors.push(error(
            "version",
            format!("this gateway reads lock file version {LOCK_VERSION}; make the file again with `drawbridge pin`"),
        ));
    }
    if lock.digest != DIGEST_SCHEME {
        errors.push(error("digest", format!("must be `{DIGEST_SCHEME}`")));
    }
    for (name, digest) in &lock.tools {
        if name.is_empty() {
            errors.push(error("tools", "a tool name is empty".into()));
        } else if !well_formed_digest(digest) {
            errors.push(error(
                &format!("tools.{name}"),
                "a digest is `sha256:` and 64 lower-case hex digits".into(),
            ));
        }
    }
    if errors.is_empty() {
        Ok(lock)
    } else {
        Err(errors)
    }
}

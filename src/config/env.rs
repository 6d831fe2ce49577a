//! `${VAR}` interpolation in configuration values.
//!
//! Interpolation works on parsed scalar values, never on the raw text, so a secret that
//! contains YAML syntax cannot change the structure of the file. `${VAR:-fallback}` gives a
//! default when VAR is unset or empty, as a shell does; `$$` is a literal `$`. A missing variable is an error that names the variable
//! and never shows any value.

use std::fmt;

/// What went wrong while expanding one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterpolationError {
    /// `${NAME}` with NAME unset (and no fallback).
    Missing(String),
    /// `${` without a closing brace, or a name with characters other than `[A-Za-z0-9_]`.
    Malformed(String),
}

impl fmt::Display for InterpolationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InterpolationError::Missing(name) => {
                write!(f, "environment variable `{name}` is not set")
            }
            InterpolationError::Malformed(why) => write!(f, "bad `${{…}}` reference: {why}"),
        }
    }
}

/// Expands every reference in `value`, looking variables up with `lookup`.
pub fn interpolate_with(
    value: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, InterpolationError> {
    if !value.contains('$') {
        return Ok(value.to_string());
    }
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('{') {
            let close = inner
                .find('}')
                .ok_or_else(|| InterpolationError::Malformed("missing `}`".into()))?;
            let (name, fallback) = match inner[..close].split_once(":-") {
                Some((name, fallback)) => (name, Some(fallback)),
                None => (&inner[..close], None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(InterpolationError::Malformed(format!(
                    "`{name}` is not a variable name"
                )));
            }
            // As in a shell, `:-` gives the fallback for an unset and for an empty variable.
            match (lookup(name), fallback) {
                (Some(v), Some(f)) if v.is_empty() => out.push_str(f),
                (Some(v), _) => out.push_str(&v),
                (None, Some(f)) => out.push_str(f),
                (None, None) => return Err(InterpolationError::Missing(name.to_string())),
            }
            rest = &inner[close + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Expands references from the process environment.
pub fn interpolate(value: &str) -> Result<String, InterpolationError> {
    interpolate_with(value, |name| std::env::var(name).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("127.0.0.1".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_references_and_keeps_the_rest() {
        assert_eq!(
            interpolate_with("http://${HOST}:80/${EMPTY}x", env).as_deref(),
            Ok("http://127.0.0.1:80/x")
        );
        assert_eq!(interpolate_with("no refs", env).as_deref(), Ok("no refs"));
    }

    #[test]
    fn fallbacks_and_escapes() {
        assert_eq!(
            interpolate_with("${NOPE:-8080}", env).as_deref(),
            Ok("8080")
        );
        assert_eq!(interpolate_with("a$$b$c", env).as_deref(), Ok("a$b$c"));
    }

    #[test]
    fn an_empty_variable_takes_the_fallback_as_in_a_shell() {
        // Before: `${EMPTY:-8080}` with EMPTY="" gave "".
        assert_eq!(
            interpolate_with("${EMPTY:-8080}", env).as_deref(),
            Ok("8080")
        );
        assert_eq!(interpolate_with("x${EMPTY}y", env).as_deref(), Ok("xy"));
        assert_eq!(
            interpolate_with("${HOST:-8080}", env).as_deref(),
            Ok("127.0.0.1")
        );
    }

    #[test]
    fn missing_variable_is_named() {
        let err = interpolate_with("${SECRET_KEY}", env).unwrap_err();
        assert_eq!(err, InterpolationError::Missing("SECRET_KEY".into()));
        assert_eq!(
            err.to_string(),
            "environment variable `SECRET_KEY` is not set"
        );
    }

    #[test]
    fn malformed_references_are_errors() {
        assert!(matches!(
            interpolate_with("${OPEN", env),
            Err(InterpolationError::Malformed(_))
        ));
        assert!(matches!(
            interpolate_with("${BAD-NAME}", env),
            Err(InterpolationError::Malformed(_))
        ));
    }
}

//! The shape of the file: YAML syntax and the serde model of [`RawConfig`], with errors in
//! the operator's words.
//!
//! serde stops at the first shape error. So that one pass reports them all, a file that
//! fails is checked again part by part (each top-level key, each issuer, each route), and
//! every part's first error is reported. Messages name what was expected (`a whole
//! number`, `a list, e.g. [mcp:tools]`), never a Rust type and never the value found.

use serde::de::DeserializeOwned;
use serde_yaml::Value;

use super::super::locate::{Locations, Position};
use super::super::raw::{RawConfig, RawIssuer, RawRoute};
use super::ConfigError;

/// Parts checked one by one after a failure: a bound on the work a broken file causes.
const MAX_PARTS: usize = 1_000;

pub(super) fn parse_structure(
    file: &str,
    text: &str,
    locations: &Locations,
) -> Result<RawConfig, Vec<ConfigError>> {
    if text.trim().is_empty() {
        return Err(vec![ConfigError {
            file: file.to_string(),
            position: None,
            path: String::new(),
            message: "the file is empty: at least one route is needed".into(),
        }]);
    }
    let first = match deserialize::<RawConfig>(text) {
        Ok(raw) => return Ok(raw),
        Err(e) => e,
    };
    let document = match serde_yaml::from_str::<Value>(text) {
        Ok(document) => document,
        Err(syntax) => return Err(vec![syntax_error(file, text, &syntax)]),
    };
    let mut errors = vec![shape_error(file, locations, "", first, true)];
    for error in part_errors(file, locations, &document) {
        if !errors.iter().any(|e| e.path == error.path) {
            errors.push(error);
        }
    }
    errors.sort_by_key(|e| {
        e.position
            .map_or((usize::MAX, usize::MAX), |p| (p.line, p.column))
    });
    Err(errors)
}

/// Another YAML file the configuration names (a tool pin lock file), read whole: its
/// first error, with a position in that file and no value echoed.
pub(super) fn parse_named_file<T: DeserializeOwned>(
    file: &str,
    text: &str,
) -> Result<T, ConfigError> {
    deserialize::<T>(text).map_err(|e| match serde_yaml::from_str::<Value>(text) {
        Err(syntax) => syntax_error(file, text, &syntax),
        Ok(_) => shape_error(file, &Locations::of(text), "", e, true),
    })
}

type ShapeError = serde_path_to_error::Error<serde_yaml::Error>;

fn deserialize<T: DeserializeOwned>(text: &str) -> Result<T, ShapeError> {
    serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(text))
}

/// Each part of a parsed document checked alone: the first error of each. A part is a
/// top-level key, an issuer or a route, and each key of an issuer or a route (checked
/// without the others, so only its own errors count: not the keys it lacks).
fn part_errors(file: &str, locations: &Locations, document: &Value) -> Vec<ConfigError> {
    let Value::Mapping(top) = document else {
        return Vec::new();
    };
    let mut errors = Vec::new();
    let mut check = |prefix: &str, result: Result<(), ShapeError>| {
        if let Err(e) = result {
            errors.push(shape_error(file, locations, prefix, e, false));
        }
    };
    for (key, value) in top.iter().take(MAX_PARTS) {
        match (key.as_str(), value) {
            (Some(list @ ("issuers" | "routes")), Value::Sequence(items)) => {
                for (i, item) in items.iter().enumerate().take(MAX_PARTS) {
                    let prefix = format!("{list}[{i}]");
                    if list == "issuers" {
                        check(&prefix, reparse::<RawIssuer>(item));
                        for result in each_key::<RawIssuer>(item) {
                            check(&prefix, result);
                        }
                    } else {
                        check(&prefix, reparse::<RawRoute>(item));
                        for result in each_key::<RawRoute>(item) {
                            check(&prefix, result);
                        }
                    }
                }
            }
            _ => check("", reparse::<RawConfig>(&alone(key, value))),
        }
    }
    errors
}

fn alone(key: &Value, value: &Value) -> Value {
    let mut mapping = serde_yaml::Mapping::new();
    mapping.insert(key.clone(), value.clone());
    Value::Mapping(mapping)
}

/// Each key of a mapping checked alone as a `T`, ignoring the keys `T` needs but the
/// single-key mapping lacks.
fn each_key<T: DeserializeOwned>(item: &Value) -> Vec<Result<(), ShapeError>> {
    let Value::Mapping(keys) = item else {
        return Vec::new();
    };
    keys.iter()
        .take(MAX_PARTS)
        .map(|(key, value)| match reparse::<T>(&alone(key, value)) {
            Err(e)
                if e.path().to_string() == "."
                    && e.inner().to_string().starts_with("missing field") =>
            {
                Ok(())
            }
            other => other,
        })
        .collect()
}

/// Deserialises `value` as written text, so that scalars read as they do in the file.
fn reparse<T: DeserializeOwned>(value: &Value) -> Result<(), ShapeError> {
    // Serialising a parsed YAML value cannot fail; if it did, there is nothing to add.
    let Ok(text) = serde_yaml::to_string(value) else {
        return Ok(());
    };
    deserialize::<T>(&text).map(|_| ())
}

/// Every syntax error has a position: serde_yaml's; for a file of several documents
/// (which serde_yaml reports without one), where the second starts; else the top of
/// the file.
fn syntax_error(file: &str, text: &str, error: &serde_yaml::Error) -> ConfigError {
    let position = error
        .location()
        .map(|l| Position {
            line: l.line(),
            column: l.column(),
        })
        .or_else(|| Locations::second_document(text))
        .unwrap_or(Position::TOP);
    ConfigError {
        file: file.to_string(),
        position: Some(position),
        path: String::new(),
        message: syntax_message(&error.to_string()),
    }
}

/// A YAML syntax error without serde_yaml's positions (printed once, in front) and with a
/// hint where the usual cause is known.
fn syntax_message(message: &str) -> String {
    let message = strip_positions(message);
    if message.contains("found character that cannot start any token")
        || message.contains("found a tab")
    {
        return format!("{message} (a tab? indent with spaces only)");
    }
    if message.contains("mapping values are not allowed") {
        return format!("{message} (a value with `: ` in it needs quotes)");
    }
    message
}

/// Removes every ` at line L column C` (and a trailing `, while …` left without one).
fn strip_positions(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(" at line ") {
        out.push_str(&rest[..at]);
        let tail = &rest[at + " at line ".len()..];
        let digits = |s: &str| s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let n = digits(tail);
        let tail = &tail[n..];
        rest = match tail.strip_prefix(" column ") {
            Some(t) => &t[digits(t)..],
            None => tail,
        };
    }
    out.push_str(rest);
    out
}

/// `whole`: the error came from the whole file, so serde's position is the file's.
fn shape_error(
    file: &str,
    locations: &Locations,
    prefix: &str,
    error: ShapeError,
    whole: bool,
) -> ConfigError {
    let relative = error.path().to_string();
    let path = known_path(prefix, &relative);
    let inner = error.into_inner();
    let serde_position = inner.location().filter(|_| whole).map(|l| Position {
        line: l.line(),
        column: l.column(),
    });
    let message = operator_words(
        &path,
        &redact_values(&strip_serde_position(&inner.to_string(), &relative)),
    );
    ConfigError {
        file: file.to_string(),
        position: Some(
            serde_position
                .or_else(|| locations.position_of(&path))
                .unwrap_or(Position::TOP),
        ),
        path,
        message,
    }
}

/// The key path of an error, under `prefix`, cut before the first segment serde could not
/// name (`?`).
fn known_path(prefix: &str, path: &str) -> String {
    let path = if path == "." { "" } else { path };
    let cut = path
        .find(".?")
        .or_else(|| path.starts_with('?').then_some(0));
    let path = match cut {
        Some(at) => &path[..at],
        None => path,
    };
    match (prefix.is_empty(), path.is_empty()) {
        (_, true) => prefix.to_string(),
        (true, false) => path.to_string(),
        (false, false) if path.starts_with('[') => format!("{prefix}{path}"),
        (false, false) => format!("{prefix}.{path}"),
    }
}

/// serde_yaml appends " at line L column C" and may prefix the path (relative to the part
/// deserialised); we print both ourselves.
fn strip_serde_position(message: &str, path: &str) -> String {
    let message = strip_positions(message);
    // serde_yaml names the enclosing mapping (`routes[0]: unknown field …`).
    match message.split_once(": ") {
        Some((prefix, rest)) if !prefix.is_empty() && path.starts_with(prefix) => rest.to_string(),
        _ => message,
    }
}

/// A shape error names the kind of value found, never the value: `invalid type: string
/// "Bearer sk-live-…", expected …` becomes `invalid type: string, expected …` (the value
/// may be a secret written where a mapping was expected).
fn redact_values(message: &str) -> String {
    for marker in ["invalid type: ", "invalid value: "] {
        if let Some(start) = message.find(marker) {
            let after = start + marker.len();
            let rest = &message[after..];
            let end = rest.find(", expected").unwrap_or(rest.len());
            let kind = rest[..end].split(' ').next().unwrap_or_default();
            return format!("{}{kind}{}", &message[..after], &rest[end..]);
        }
    }
    message.to_string()
}

/// serde's wording (`invalid type: string, expected usize`) in the operator's:
/// `expected a whole number, found text`.
fn operator_words(path: &str, message: &str) -> String {
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        let (found, expected) = rest.split_once(", expected ").unwrap_or((rest, ""));
        let expected = expected_words(path, expected);
        if found == "integer" && expected == "a whole number" {
            return "expected a whole number, neither negative nor this large".into();
        }
        return format!("expected {expected}, found {}", found_words(found));
    }
    if let Some(rest) = message.strip_prefix("invalid value: ") {
        let (found, expected) = rest.split_once(", expected ").unwrap_or((rest, ""));
        let found = found_words(found);
        return format!(
            "expected {}; this {found} is out of range",
            expected_words(path, expected)
        );
    }
    if let Some(rest) = message.strip_prefix("invalid length ") {
        let expected = rest.split_once(", expected ").map_or("", |(_, e)| e);
        return format!("expected {}", expected_words(path, expected));
    }
    if message.starts_with("data did not match any variant of untagged enum RawRule") {
        return "expected a list of scopes such as [tools:echo], or a mapping of `scopes`, `claims`, (for tools, prompts and resources) `arguments`, `additional_arguments` and `mode`, and (for tools) `rate_limit`, such as `{ scopes: [tools:deploy], claims: { groups: [sre] }, arguments: { path: { glob: \"/srv/**\" } }, rate_limit: { requests: 5, per: 1m, key: subject } }`; an argument rule takes `glob`, `prefix`, `one_of`, `max_length`, `min`, `max`, `regex`, `each` (conditions on every item of an array), `present`, `optional` and `mode`".into();
    }
    if message.starts_with("data did not match any variant of untagged enum RawClaimValues") {
        return "expected a list of accepted values such as [sre, platform], or a mapping such as `{ values: [sre], mode: shadow }`".into();
    }
    if message.starts_with("data did not match any variant of untagged enum RawPermissionClaim") {
        return "expected a claim name such as `roles`, or a mapping such as `{ claim: /realm_access/roles, prefix: \"realm:\" }`".into();
    }
    if let Some(rest) = message.strip_prefix("missing field ") {
        return format!("the key {rest} is required here");
    }
    message.to_string()
}

fn expected_words(path: &str, expected: &str) -> String {
    let last = path.rsplit(['.', '[']).next().unwrap_or_default();
    match expected {
        "usize" | "u8" | "u16" | "u32" | "u64" | "u128" | "isize" | "i8" | "i16" | "i32"
        | "i64" | "i128" => "a whole number".into(),
        "f32" | "f64" => "a number".into(),
        "a boolean" => "`true` or `false`".into(),
        "a string" | "a borrowed string" | "a character" => "a text value".into(),
        "a map" => "a mapping (`key: value` lines or `{ key: value }`)".into(),
        "a sequence" if last.ends_with("scopes") => "a list, e.g. [mcp:tools]".into(),
        "a sequence" if last.ends_with("origins") => {
            "a list, e.g. [\"https://app.example.com\"]".into()
        }
        "a sequence" => "a list, e.g. [a, b] or `- a` lines".into(),
        struct_name if struct_name.starts_with("struct ") => match struct_name {
            "struct RawSessionKey" => {
                "a key such as `{ id: k1, secret_file: /run/secrets/session-key }`".into()
            }
            "struct RawMatch" => "a mapping such as `{ path: /mcp }`".into(),
            "struct RawUpstream" => "a mapping such as `{ url: http://127.0.0.1:3001/mcp }`".into(),
            _ => "a mapping (`key: value` lines or `{ key: value }`)".into(),
        },
        other => other.to_string(),
    }
}

fn found_words(found: &str) -> &'static str {
    match found {
        "string" => "text",
        "integer" => "a number",
        "floating" => "a decimal number",
        "boolean" => "`true` or `false`",
        "sequence" => "a list",
        "map" => "a mapping",
        "unit" => "nothing",
        "char" => "text",
        _ => "another kind of value",
    }
}

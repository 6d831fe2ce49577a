//! Argument rules: what a permitted tool, prompt or resource may be called *with*.
//! Pure functions over a call's `arguments` (already read strictly, see
//! `mcp::arguments`) and the rules of the policy entry that permitted it; no I/O.
//!
//! A rule names an argument (a member of `arguments`, or an RFC 6901 pointer such as
//! `/options/depth` for a nested one) and sets conditions on it. Every rule must hold.
//! The choices, each made so that the gateway never passes a value the upstream reads
//! differently (docs/security/policy.md has the analysis):
//! - An argument a rule names must be present unless the rule says `optional: true`
//!   (the upstream's default for an absent argument is invisible here); `present: false`
//!   means it must be absent.
//! - A value of the wrong type fails: `null` is no string, `"5"` no number.
//! - `each` judges every item of an array (`paths: [...]`) by its conditions; a value
//!   that is not an array fails, an empty one passes (bound it with `max_length`).
//! - `glob` and `prefix` refuse, rather than normalize, a value with a `..` segment
//!   (between `/` or `\`, percent-encoded or spelled with Unicode dot leaders) and any
//!   NUL character: a path the upstream resolves elsewhere never matches.
//! - `regex` matches the whole value (it is anchored), with the linear-time `regex`
//!   engine, a pattern bounded at load and a value bounded at run time.
//! - Numbers are compared as IEEE doubles; an integer beyond 2^53, which a double
//!   cannot hold exactly, fails `min`/`max`/`one_of`.
//! - A member whose key differs from a named one only by case (`PATH` beside `path`),
//!   or a `__proto__` member anywhere, fails: some upstreams read those in its place.
//!
//! Reports name the rule (`arguments:/path`), never the value.

use serde_json::{Map, Value};

use super::Glob;

/// Longest regex pattern accepted in the configuration (bytes).
pub const MAX_REGEX_PATTERN: usize = 1024;
/// Compiled-program budget of one regex (bytes).
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Longest value a regex is run on (bytes); a longer one fails the rule.
pub const MAX_REGEX_INPUT: usize = 64 * 1024;
/// Largest integer a double holds exactly (2^53), and as a double.
const EXACT_INTEGER: u64 = 1 << 53;
const EXACT_DOUBLE: f64 = 9_007_199_254_740_992.0;

/// An argument named by a rule: a top-level member by its exact name, or a JSON pointer
/// (`/options/depth`, `~1` for `/` and `~0` for `~` in a member name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgumentName {
    text: String,
    segments: Vec<String>,
}

impl ArgumentName {
    pub fn parse(text: &str) -> Result<ArgumentName, &'static str> {
        if text.is_empty() {
            return Err("an argument name must not be empty");
        }
        if !text.starts_with('/') {
            return Ok(ArgumentName {
                text: text.to_string(),
                segments: vec![text.to_string()],
            });
        }
        let mut segments = Vec::new();
        for raw in text.split('/').skip(1) {
            if raw.is_empty() {
                return Err("a JSON pointer names no empty member (`//` or a trailing `/`)");
            }
            let mut segment = String::with_capacity(raw.len());
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                match (c, c == '~') {
                    (_, true) => match chars.next() {
                        Some('0') => segment.push('~'),
                        Some('1') => segment.push('/'),
                        _ => {
                            return Err(
                                "in a JSON pointer, `~` must be followed by 0 or 1 (RFC 6901)",
                            )
                        }
                    },
                    (c, false) => segment.push(c),
                }
            }
            segments.push(segment);
        }
        Ok(ArgumentName {
            text: text.to_string(),
            segments,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The top-level member this name lives under.
    pub fn first(&self) -> &str {
        self.segments.first().map_or("", String::as_str)
    }

    /// The audit label of a rule on this argument: `arguments:/path`.
    pub fn label(&self) -> String {
        if self.text.starts_with('/') {
            format!("arguments:{}", self.text)
        } else {
            format!(
                "arguments:/{}",
                self.text.replace('~', "~0").replace('/', "~1")
            )
        }
    }
}

/// One condition on an argument's value.
#[derive(Debug, Clone)]
pub enum Condition {
    /// A string matching the pattern (`*` any run, `?` one character), with no dot
    /// segment and no NUL.
    Glob(Glob),
    /// A string starting with this, with no dot segment and no NUL.
    Prefix(String),
    /// Equal to one of these scalars (strings exactly, numbers by value).
    OneOf(Vec<Value>),
    /// A string of at most this many characters, or an array of at most this many items.
    MaxLength(usize),
    /// A number at least this.
    Min(f64),
    /// A number at most this.
    Max(f64),
    /// A string the whole of which the pattern matches.
    Regex(Box<regex::Regex>),
    /// An array every item of which satisfies these conditions (none of them `Each`).
    Each(Vec<Condition>),
}

impl PartialEq for Condition {
    fn eq(&self, other: &Condition) -> bool {
        use Condition::*;
        match (self, other) {
            (Glob(a), Glob(b)) => a == b,
            (Prefix(a), Prefix(b)) => a == b,
            (OneOf(a), OneOf(b)) => a == b,
            (MaxLength(a), MaxLength(b)) => a == b,
            (Min(a), Min(b)) | (Max(a), Max(b)) => a.to_bits() == b.to_bits(),
            (Regex(a), Regex(b)) => a.as_str() == b.as_str(),
            (Each(a), Each(b)) => a == b,
            _ => false,
        }
    }
}

// Bounds are finite (the configuration refuses others), so equality is reflexive.
impl Eq for Condition {}

impl Condition {
    /// Compiles a `regex` condition: anchored to the whole value, size-bounded.
    pub fn regex(pattern: &str) -> Result<Condition, String> {
        if pattern.len() > MAX_REGEX_PATTERN {
            return Err(format!("a regex is at most {MAX_REGEX_PATTERN} bytes long"));
        }
        regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .nest_limit(64)
            .build()
            .map(|r| Condition::Regex(Box::new(r)))
            // Not the library's text: it quotes the pattern, and configuration errors
            // name no values.
            .map_err(|e| match e {
                regex::Error::CompiledTooBig(_) => {
                    "the regex compiles too big; simplify it".to_string()
                }
                _ => "not a valid regex (the `regex` crate's syntax: no look-around or backreferences)".to_string(),
            })
    }

    /// The condition's key in the configuration, for reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Condition::Glob(_) => "glob",
            Condition::Prefix(_) => "prefix",
            Condition::OneOf(_) => "one_of",
            Condition::MaxLength(_) => "max_length",
            Condition::Min(_) => "min",
            Condition::Max(_) => "max",
            Condition::Regex(_) => "regex",
            Condition::Each(_) => "each",
        }
    }

    fn holds(&self, value: &Value) -> Result<(), Failure> {
        let fails = Failure::Condition(self.kind());
        let ok = match (self, value) {
            (Condition::Glob(glob), Value::String(s)) => {
                path_safe(s)?;
                glob.matches(s)
            }
            (Condition::Prefix(prefix), Value::String(s)) => {
                path_safe(s)?;
                s.starts_with(prefix.as_str())
            }
            (Condition::OneOf(values), v) => values.iter().any(|allowed| same_scalar(allowed, v)),
            (Condition::MaxLength(n), Value::String(s)) => s.chars().count() <= *n,
            (Condition::MaxLength(n), Value::Array(items)) => items.len() <= *n,
            (Condition::Min(min), Value::Number(_)) => {
                exact_number(value).is_some_and(|x| x >= *min)
            }
            (Condition::Max(max), Value::Number(_)) => {
                exact_number(value).is_some_and(|x| x <= *max)
            }
            (Condition::Regex(re), Value::String(s)) => {
                if s.len() > MAX_REGEX_INPUT {
                    return Err(Failure::TooLong);
                }
                re.is_match(s)
            }
            (Condition::Each(conditions), Value::Array(items)) => {
                for item in items {
                    conditions
                        .iter()
                        .try_for_each(|c| c.holds(item))
                        .map_err(Failure::in_item)?;
                }
                true
            }
            _ => return Err(Failure::WrongType),
        };
        if ok {
            Ok(())
        } else {
            Err(fails)
        }
    }
}

/// A number's value as a double, when the double is exact enough to compare: not an
/// integer beyond 2^53 (where doubles skip integers, so `max: 10` could not be told
/// from a neighbour the upstream reads exactly).
fn exact_number(value: &Value) -> Option<f64> {
    let n = value.as_number()?;
    if let Some(i) = n.as_i64() {
        return (i.unsigned_abs() <= EXACT_INTEGER).then_some(i as f64);
    }
    if let Some(u) = n.as_u64() {
        return (u <= EXACT_INTEGER).then_some(u as f64);
    }
    let f = n.as_f64()?;
    (f.is_finite() && (f.fract() != 0.0 || f.abs() <= EXACT_DOUBLE)).then_some(f)
}

fn same_scalar(allowed: &Value, value: &Value) -> bool {
    match (allowed, value) {
        (Value::Number(_), Value::Number(_)) => {
            matches!((exact_number(allowed), exact_number(value)), (Some(a), Some(b)) if a == b)
        }
        (Value::String(a), Value::String(b)) => a == b,
        (Value::Bool(a), Value::Bool(b)) => a == b,
        _ => false,
    }
}

/// Refuses what a path- or URI-reading upstream could resolve outside a pattern that
/// matched it: a `..` segment and a NUL (where C strings end).
fn path_safe(value: &str) -> Result<(), Failure> {
    if value.contains('\0') {
        return Err(Failure::Nul);
    }
    if has_dot_segment(value) || has_dot_segment(&percent_decoded(value)) {
        return Err(Failure::DotSegment);
    }
    Ok(())
}

/// Separators: `/`, `\` (Windows) and their fullwidth forms (which NFKC folds to them).
fn is_separator(c: char) -> bool {
    matches!(c, '/' | '\\' | '\u{FF0F}' | '\u{FF3C}')
}

/// A segment that is `..`, or becomes `..` under Unicode compatibility normalization
/// (one-dot leader U+2024, two-dot leader U+2025, fullwidth and small full stops).
fn has_dot_segment(value: &str) -> bool {
    value.split(is_separator).any(|segment| {
        let dots: usize = segment
            .chars()
            .map(|c| match c {
                '.' | '\u{2024}' | '\u{FF0E}' | '\u{FE52}' => Some(1),
                '\u{2025}' => Some(2),
                _ => None,
            })
            .try_fold(0usize, |n, d| d.map(|d| n + d))
            .unwrap_or(0);
        dots == 2
    })
}

/// `value` with `%XX` decoded (invalid UTF-8 replaced), once: enough to see `%2e%2e` and
/// `%2f`, which some upstreams decode before resolving.
fn percent_decoded(value: &str) -> String {
    if !value.contains('%') {
        return value.to_string();
    }
    let bytes: Vec<u8> = percent_encoding::percent_decode_str(value).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Whether an argument must be there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// The default: absent fails.
    Required,
    /// `optional: true`: absent passes; present must satisfy the conditions.
    Optional,
    /// `present: false`: must be absent.
    Absent,
}

/// One argument rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgumentRule {
    pub name: ArgumentName,
    pub presence: Presence,
    pub conditions: Vec<Condition>,
    /// `mode: shadow`: evaluated and recorded, never refuses.
    pub shadow: bool,
}

/// Why a rule failed. Names no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Required and absent.
    Missing,
    /// `present: false` and present.
    Present,
    /// The value has a type the condition does not accept.
    WrongType,
    /// The named condition (`glob`, `max`, …) does not hold.
    Condition(&'static str),
    /// A `..` segment in a value a `glob` or `prefix` judges.
    DotSegment,
    /// A NUL in a value a `glob` or `prefix` judges.
    Nul,
    /// Longer than a regex is run on.
    TooLong,
    /// Beside the named member, one spelled the same but for case.
    Spelling,
    /// A `__proto__` member.
    Prototype,
    /// `arguments` is there and not an object.
    NotAnObject,
    /// The arguments could not be read strictly (see `mcp::arguments`).
    Unreadable,
    /// A member no rule names, with `additional_arguments: deny`.
    Unlisted,
    /// An item of an array judged by `each` failed; the words say how.
    Item(&'static str),
}

impl Failure {
    pub fn reason(&self) -> &'static str {
        match self {
            Failure::Missing => "is required",
            Failure::Present => "is not allowed",
            Failure::WrongType => "has the wrong type",
            Failure::Condition(kind) => match *kind {
                "glob" => "does not match the allowed pattern",
                "prefix" => "does not have the allowed prefix",
                "one_of" => "is not one of the allowed values",
                "max_length" => "is too long",
                "min" => "is below the minimum",
                "max" => "is above the maximum",
                "regex" => "does not match the allowed pattern",
                _ => "does not satisfy its rule",
            },
            Failure::DotSegment => "contains a `..` segment",
            Failure::Nul => "contains a NUL character",
            Failure::TooLong => "is too long to check",
            Failure::Spelling => "is spelled twice (differing only in case)",
            Failure::Prototype => "contains a `__proto__` member",
            Failure::NotAnObject => "is not an object",
            Failure::Unreadable => "could not be read unambiguously",
            Failure::Unlisted => "is not allowed by the policy",
            Failure::Item(reason) => reason,
        }
    }

    /// What an array's item failing `self` makes of the array.
    fn in_item(self) -> Failure {
        Failure::Item(match self {
            Failure::WrongType => "has an item of the wrong type",
            Failure::Condition("glob" | "regex") => {
                "has an item that does not match the allowed pattern"
            }
            Failure::Condition("prefix") => "has an item without the allowed prefix",
            Failure::Condition("one_of") => "has an item that is not one of the allowed values",
            Failure::Condition("max_length") => "has an item that is too long",
            Failure::Condition("min") => "has an item below the minimum",
            Failure::Condition("max") => "has an item above the maximum",
            Failure::DotSegment => "has an item with a `..` segment",
            Failure::Nul => "has an item with a NUL character",
            Failure::TooLong => "has an item too long to check",
            _ => "has an item that does not satisfy its rule",
        })
    }
}

/// One rule's outcome, for enforcement, audit and `explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `arguments:/path`, `arguments` (the object itself) or `additional_arguments`.
    pub rule: String,
    pub result: Result<(), Failure>,
    pub shadow: bool,
}

/// The argument rules of one policy entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArgumentRules {
    pub rules: Vec<ArgumentRule>,
    /// `additional_arguments: deny`: no top-level member but those the rules name.
    pub deny_additional: bool,
    /// Members never counted as additional (`_meta` when the rules read `params`).
    pub exempt: &'static [&'static str],
}

/// The label of the check on the arguments object itself.
pub const OBJECT_RULE: &str = "arguments";
/// The label of `additional_arguments: deny`.
pub const ADDITIONAL_RULE: &str = "additional_arguments";

impl ArgumentRules {
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && !self.deny_additional
    }

    /// Every rule's outcome on `arguments` (`None`: the call has none, which reads as an
    /// empty object). Checks on the object itself come first, under [`OBJECT_RULE`].
    pub fn evaluate(&self, arguments: Option<&Value>) -> Vec<Outcome> {
        let empty = Map::new();
        let object = match arguments {
            None => &empty,
            Some(Value::Object(map)) => map,
            Some(_) => return vec![object_outcome(Err(Failure::NotAnObject))],
        };
        let mut out = Vec::with_capacity(self.rules.len() + 2);
        if has_prototype(object) {
            out.push(object_outcome(Err(Failure::Prototype)));
        }
        if self.deny_additional {
            let listed = |k: &String| {
                self.exempt.contains(&k.as_str()) || self.rules.iter().any(|r| r.name.first() == k)
            };
            out.push(Outcome {
                rule: ADDITIONAL_RULE.to_string(),
                result: if object.keys().all(listed) {
                    Ok(())
                } else {
                    Err(Failure::Unlisted)
                },
                shadow: false,
            });
        }
        for rule in &self.rules {
            out.push(Outcome {
                rule: rule.name.label(),
                result: rule.check(object),
                shadow: rule.shadow,
            });
        }
        out
    }

    /// The first enforced failure, if any.
    pub fn first_failure(outcomes: &[Outcome]) -> Option<&Outcome> {
        outcomes.iter().find(|o| !o.shadow && o.result.is_err())
    }
}

/// The refusal's words for a failed rule: names the argument, never its value.
pub fn describe(rule: &str, reason: &str) -> String {
    match rule {
        OBJECT_RULE => format!("its `arguments` {reason}"),
        ADDITIONAL_RULE => format!("an argument {reason}"),
        rule => format!(
            "argument `{}` {reason}",
            rule.strip_prefix("arguments:").unwrap_or(rule)
        ),
    }
}

fn object_outcome(result: Result<(), Failure>) -> Outcome {
    Outcome {
        rule: OBJECT_RULE.to_string(),
        result,
        shadow: false,
    }
}

/// A `__proto__` member at any depth: JavaScript code that copies an object member by
/// member sets the copy's prototype from it, and then reads members the gateway never
/// saw as present.
fn has_prototype(object: &Map<String, Value>) -> bool {
    let mut stack: Vec<&Value> = Vec::new();
    for (k, v) in object {
        if k == "__proto__" {
            return true;
        }
        stack.push(v);
    }
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    if k == "__proto__" {
                        return true;
                    }
                    stack.push(v);
                }
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    false
}

impl ArgumentRule {
    fn check(&self, object: &Map<String, Value>) -> Result<(), Failure> {
        let value = find(object, &self.name.segments)?;
        match (value, self.presence) {
            (None, Presence::Required) => Err(Failure::Missing),
            (None, _) => Ok(()),
            (Some(_), Presence::Absent) => Err(Failure::Present),
            (Some(v), _) => self.conditions.iter().try_for_each(|c| c.holds(v)),
        }
    }
}

/// The member at `segments`: `Ok(None)` when absent, an error when the path runs
/// through a value that is not an object (or an array, for an index) or is spelled
/// twice.
fn find<'v>(
    object: &'v Map<String, Value>,
    segments: &[String],
) -> Result<Option<&'v Value>, Failure> {
    let Some((first, rest)) = segments.split_first() else {
        return Ok(None);
    };
    if object
        .keys()
        .any(|k| k != first && crate::mcp::jsonrpc::same_but_for_case(k, first))
    {
        return Err(Failure::Spelling);
    }
    let mut current = match object.get(first) {
        Some(v) => v,
        None => return Ok(None),
    };
    for segment in rest {
        current = match current {
            Value::Object(map) => {
                if map
                    .keys()
                    .any(|k| k != segment && crate::mcp::jsonrpc::same_but_for_case(k, segment))
                {
                    return Err(Failure::Spelling);
                }
                match map.get(segment) {
                    Some(v) => v,
                    None => return Ok(None),
                }
            }
            Value::Array(items) => match array_index(segment).and_then(|i| items.get(i)) {
                Some(v) => v,
                None => return Ok(None),
            },
            _ => return Err(Failure::WrongType),
        };
    }
    Ok(Some(current))
}

/// An RFC 6901 array index: `0` or digits without a leading zero.
fn array_index(segment: &str) -> Option<usize> {
    let canonical = segment == "0"
        || (!segment.starts_with('0')
            && !segment.is_empty()
            && segment.bytes().all(|b| b.is_ascii_digit()));
    canonical.then(|| segment.parse().ok()).flatten()
}

#[cfg(test)]
mod tests;

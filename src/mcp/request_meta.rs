//! The request metadata headers of Streamable HTTP (MCP 2026-07-28, "Request
//! Metadata"): `MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name` and `Mcp-Param-*` mirror
//! fields of the body so that intermediaries can route without reading it. The gateway
//! reads the body, so for it the headers decide nothing; what it owns is that they never
//! say something the body does not, since a component before or behind it (a load
//! balancer, a rate limiter, the upstream's own router) may act on them.
//!
//! Which rules apply is decided by the body, per request:
//! - A message whose `params._meta` names a protocol version
//!   ([`VersionClaim`]) follows the 2026-07-28 rules: a request must carry
//!   `MCP-Protocol-Version` equal to that version, `Mcp-Method` equal to its method, and
//!   `Mcp-Name` equal to its target on `tools/call`, `resources/read` and `prompts/get`
//!   (on `tasks/get`, `tasks/update` and `tasks/cancel` it mirrors `params.taskId`,
//!   compared when present).
//!   A notification's headers are checked when present (the revision defines none for
//!   notification POSTs).
//! - A request whose body names no version but whose `MCP-Protocol-Version` header names
//!   one the `initialize` handshake does not negotiate is refused: upstreams pick the
//!   protocol generation by the header (the Python SDK) or by the body (the TypeScript
//!   SDK), so header and body must agree on it.
//! - Any other message (MCP up to 2025-11-25) keeps the earlier rules: the headers are
//!   optional, and checked against the body when present.
//!
//! In every generation: `Mcp-Name` (and `Mcp-Param-*`) values in the Base64 sentinel
//! form `=?base64?…?=` are decoded before comparing, and one whose payload is not
//! canonical Base64 of UTF-8 is refused; a header value that is not visible ASCII is
//! refused; a batch carries no mirrored header and no version claim (2026-07-28 has no
//! batches). `Mcp-Param-*` headers mirror tool arguments that the tool's `inputSchema`
//! designates (`x-mcp-header`); the gateway does not hold the schemas, so it checks only
//! that such a header is well formed and stands on a `tools/call` — the upstream, which
//! knows the schema, compares the value (the SDKs do).
//!
//! Repeated `Mcp-*` headers are refused before this step (`proxy::form`). Pure: headers
//! and the inspected body in, a verdict out.

use std::borrow::Cow;

use base64::Engine as _;
use http::{HeaderMap, HeaderName};

use super::jsonrpc::{Inspected, Message, MessageKind, VersionClaim};

// Parsed once: looking a header up by `&str` parses and lower-cases the name each time.
/// The header naming the protocol version.
pub static PROTOCOL_VERSION_HEADER: HeaderName = HeaderName::from_static("mcp-protocol-version");
/// The header mirroring the JSON-RPC `method`.
pub static METHOD_HEADER: HeaderName = HeaderName::from_static("mcp-method");
/// The header mirroring `params.name` or `params.uri`.
pub static NAME_HEADER: HeaderName = HeaderName::from_static("mcp-name");
/// The prefix of the headers mirroring tool arguments (`Mcp-Param-{Name}`).
pub const PARAM_HEADER_PREFIX: &str = "mcp-param-";

/// The protocol versions negotiated by the `initialize` handshake; any other value of
/// `MCP-Protocol-Version` belongs to the per-request generation (2026-07-28 on).
pub const HANDSHAKE_VERSIONS: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

/// The methods whose requests must carry `Mcp-Name` under 2026-07-28.
pub const NAME_REQUIRED: [&str; 3] = ["tools/call", "resources/read", "prompts/get"];

/// The tasks extension's methods whose `Mcp-Name` mirrors `params.taskId` (so that
/// intermediaries can route every request about a task to where it runs; the TypeScript
/// SDK v2 client sends it). Optional, compared when present.
pub const TASK_NAME_METHODS: [&str; 3] = ["tasks/get", "tasks/update", "tasks/cancel"];

/// The only method whose arguments `Mcp-Param-*` headers mirror.
const PARAM_METHOD: &str = "tools/call";

/// The Base64 sentinel around an encoded header value (case-sensitive).
const SENTINEL_PREFIX: &str = "=?base64?";
const SENTINEL_SUFFIX: &str = "?=";

/// A header the check reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    ProtocolVersion,
    Method,
    Name,
    Param,
}

impl Header {
    /// The header's name as the specification writes it.
    pub fn name(self) -> &'static str {
        match self {
            Header::ProtocolVersion => "MCP-Protocol-Version",
            Header::Method => "Mcp-Method",
            Header::Name => "Mcp-Name",
            Header::Param => "Mcp-Param-*",
        }
    }
}

/// Why the headers and the body disagree. Each has a fixed text (no header or body
/// content is ever echoed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaError {
    /// A header value outside visible ASCII, space and tab.
    NotVisibleAscii(Header),
    /// A Base64 sentinel whose payload is not canonical Base64 of UTF-8.
    BadEncoding(Header),
    /// A 2026-07-28 request without `MCP-Protocol-Version`.
    MissingVersion,
    /// `MCP-Protocol-Version` differs from the version the body names.
    VersionMismatch,
    /// The body names its protocol version with something that is not a string.
    VersionNotAString,
    /// `MCP-Protocol-Version` names a version without the `initialize` handshake, and
    /// the body names none.
    VersionWithoutClaim,
    /// A 2026-07-28 request without `Mcp-Method`.
    MissingMethod,
    /// `Mcp-Method` differs from the body's method (or there is no method to mirror).
    MethodMismatch,
    /// A 2026-07-28 `tools/call`, `resources/read` or `prompts/get` without `Mcp-Name`.
    MissingName,
    /// `Mcp-Name` differs from the body's target or task id (or the method has none).
    NameMismatch,
    /// An `Mcp-Param-*` header on anything but a `tools/call`.
    ParamWithoutArguments,
    /// `Mcp-Method`, `Mcp-Name` or `Mcp-Param-*` on a batch: there is no one message for
    /// them to mirror.
    HeadersOnBatch,
    /// A batch with a message naming a protocol version: 2026-07-28 has no batches.
    BatchWithClaim,
}

impl MetaError {
    /// What is wrong, in a fixed text.
    pub fn reason(self) -> &'static str {
        match self {
            MetaError::NotVisibleAscii(h) => match h {
                Header::ProtocolVersion => "the MCP-Protocol-Version header is not visible ASCII",
                Header::Method => "the Mcp-Method header is not visible ASCII",
                Header::Name => {
                    "the Mcp-Name header is not visible ASCII (send other values as =?base64?…?=)"
                }
                Header::Param => {
                    "an Mcp-Param-* header is not visible ASCII (send other values as =?base64?…?=)"
                }
            },
            MetaError::BadEncoding(h) => match h {
                Header::Name => "the Mcp-Name header is not canonical Base64 of UTF-8 inside =?base64?…?=",
                _ => "an Mcp-Param-* header is not canonical Base64 of UTF-8 inside =?base64?…?=",
            },
            MetaError::MissingVersion => {
                "the MCP-Protocol-Version header is required and must equal params._meta's protocol version"
            }
            MetaError::VersionMismatch => {
                "the MCP-Protocol-Version header does not match params._meta's protocol version"
            }
            MetaError::VersionNotAString => "params._meta's protocol version is not a string",
            MetaError::VersionWithoutClaim => {
                "the MCP-Protocol-Version header names a protocol version the body's params._meta does not"
            }
            MetaError::MissingMethod => "the Mcp-Method header is required",
            MetaError::MethodMismatch => "the Mcp-Method header does not match the body's method",
            MetaError::MissingName => {
                "the Mcp-Name header is required on tools/call, resources/read and prompts/get"
            }
            MetaError::NameMismatch => {
                "the Mcp-Name header does not match the body's params.name, params.uri or params.taskId"
            }
            MetaError::ParamWithoutArguments => {
                "Mcp-Param-* headers mirror tool arguments: only a tools/call carries them"
            }
            MetaError::HeadersOnBatch => {
                "a batch carries no Mcp-Method, Mcp-Name or Mcp-Param-* header"
            }
            MetaError::BatchWithClaim => {
                "MCP 2026-07-28 has no JSON-RPC batches: send one message per request"
            }
        }
    }

    /// The header concerned, for the ones about a single header.
    pub fn header(self) -> Option<Header> {
        match self {
            MetaError::NotVisibleAscii(h) | MetaError::BadEncoding(h) => Some(h),
            MetaError::MissingVersion
            | MetaError::VersionMismatch
            | MetaError::VersionWithoutClaim => Some(Header::ProtocolVersion),
            MetaError::MissingMethod | MetaError::MethodMismatch => Some(Header::Method),
            MetaError::MissingName | MetaError::NameMismatch => Some(Header::Name),
            MetaError::ParamWithoutArguments => Some(Header::Param),
            MetaError::VersionNotAString
            | MetaError::HeadersOnBatch
            | MetaError::BatchWithClaim => None,
        }
    }
}

impl std::fmt::Display for MetaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

/// The mirrored headers of one request, as text.
struct Mirrored<'a> {
    version: Option<&'a str>,
    method: Option<&'a str>,
    name: Option<&'a str>,
    /// Whether any `Mcp-Param-*` header is present (all checked for form).
    params: bool,
}

impl<'a> Mirrored<'a> {
    fn read(headers: &'a HeaderMap) -> Result<Mirrored<'a>, MetaError> {
        let text = |name: &HeaderName, which: Header| {
            headers.get(name).map(|v| visible(v, which)).transpose()
        };
        let mut params = false;
        for (name, value) in headers {
            if name.as_str().starts_with(PARAM_HEADER_PREFIX) {
                decode_header_value(visible(value, Header::Param)?)
                    .ok_or(MetaError::BadEncoding(Header::Param))?;
                params = true;
            }
        }
        Ok(Mirrored {
            version: text(&PROTOCOL_VERSION_HEADER, Header::ProtocolVersion)?,
            method: text(&METHOD_HEADER, Header::Method)?,
            name: text(&NAME_HEADER, Header::Name)?,
            params,
        })
    }
}

/// A header value as text: visible ASCII, space and tab only, without the optional white
/// space around it (which HTTP parsers and the SDKs drop too).
fn visible(value: &http::HeaderValue, which: Header) -> Result<&str, MetaError> {
    value
        .to_str()
        .map(|v| v.trim_matches([' ', '\t']))
        .map_err(|_| MetaError::NotVisibleAscii(which))
}

/// The value a mirrored header stands for: itself, or the UTF-8 text inside the Base64
/// sentinel `=?base64?…?=`. `None` for a sentinel whose payload is not canonical Base64
/// (standard alphabet, padded, no stray bits) of UTF-8 text, and for `=?base64?=`, which
/// one SDK reads as the empty value and another as itself.
pub fn decode_header_value(value: &str) -> Option<Cow<'_, str>> {
    if !(value.starts_with(SENTINEL_PREFIX) && value.ends_with(SENTINEL_SUFFIX)) {
        return Some(Cow::Borrowed(value));
    }
    let payload = value
        .get(SENTINEL_PREFIX.len()..)?
        .strip_suffix(SENTINEL_SUFFIX)?;
    // The standard engine refuses missing padding and non-zero trailing bits.
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(payload)
        .ok()?;
    String::from_utf8(bytes).ok().map(Cow::Owned)
}

/// How a mirrored header carries `value`: as itself when that reads back unchanged
/// (visible ASCII and inner spaces, no white space at either end, not itself in the
/// sentinel's form), otherwise in the Base64 sentinel `=?base64?…?=`. The inverse of
/// [`decode_header_value`]; used for the `Mcp-Name` an upstream receives when the gateway
/// restored its own task id in the body (see `mcp::handles`).
pub fn encode_header_value(value: &str) -> String {
    let visible = value.bytes().all(|b| (0x20..0x7f).contains(&b));
    let padded = value.starts_with([' ', '\t']) || value.ends_with([' ', '\t']);
    let sentinel = value.starts_with(SENTINEL_PREFIX) && value.ends_with(SENTINEL_SUFFIX);
    let plain = !value.is_empty() && visible && !padded && !sentinel;
    if plain {
        return value.to_string();
    }
    let payload = base64::engine::general_purpose::STANDARD.encode(value.as_bytes());
    format!("{SENTINEL_PREFIX}{payload}{SENTINEL_SUFFIX}")
}

/// The first protocol version without JSON-RPC batches.
const NO_BATCHES_SINCE: &str = "2025-06-18";

/// Whether the protocol version the client names (`MCP-Protocol-Version`) has batches:
/// none named (2025-03-26 is assumed) or one before 2025-06-18. A value that is not a
/// `YYYY-MM-DD` date is not known to allow them.
pub fn batches_allowed(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get("mcp-protocol-version") else {
        return true;
    };
    let version = value.as_bytes();
    let is_date = version.len() == 10
        && version.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            _ => b.is_ascii_digit(),
        });
    is_date && version < NO_BATCHES_SINCE.as_bytes()
}

/// Checks the request metadata headers against the inspected body (see the module
/// documentation for the rules).
pub fn check(headers: &HeaderMap, inspected: &Inspected) -> Result<(), MetaError> {
    let mirrored = Mirrored::read(headers)?;
    if inspected.batch {
        if inspected
            .messages
            .iter()
            .any(|m| m.version_claim != VersionClaim::Absent)
        {
            return Err(MetaError::BatchWithClaim);
        }
        if mirrored.method.is_some() || mirrored.name.is_some() || mirrored.params {
            return Err(MetaError::HeadersOnBatch);
        }
        return Ok(());
    }
    match &inspected.messages[..] {
        [message] => check_message(&mirrored, message),
        // A body that is not a batch holds exactly one message.
        _ => Err(MetaError::HeadersOnBatch),
    }
}

fn check_message(mirrored: &Mirrored<'_>, message: &Message) -> Result<(), MetaError> {
    let MessageKind::Call { method, target } = &message.kind else {
        // A response (to a server's request, before 2026-07-28): nothing to mirror.
        if mirrored.method.is_some() {
            return Err(MetaError::MethodMismatch);
        }
        if mirrored.name.is_some() {
            return Err(MetaError::NameMismatch);
        }
        if mirrored.params {
            return Err(MetaError::ParamWithoutArguments);
        }
        return Ok(());
    };
    let request = message.id.is_some();
    // Which generation's rules: the body decides; a header claiming more is refused.
    let required = match &message.version_claim {
        VersionClaim::NotAString => return Err(MetaError::VersionNotAString),
        VersionClaim::Named(claimed) => {
            match mirrored.version {
                Some(header) if header != claimed => return Err(MetaError::VersionMismatch),
                None if request => return Err(MetaError::MissingVersion),
                _ => {}
            }
            request
        }
        VersionClaim::Absent => {
            if request
                && mirrored
                    .version
                    .is_some_and(|v| !HANDSHAKE_VERSIONS.contains(&v))
            {
                return Err(MetaError::VersionWithoutClaim);
            }
            false
        }
    };
    match mirrored.method {
        Some(header) if header != method => return Err(MetaError::MethodMismatch),
        None if required => return Err(MetaError::MissingMethod),
        _ => {}
    }
    // What `Mcp-Name` mirrors: the target, or on the tasks methods the task id.
    let source = if TASK_NAME_METHODS.contains(&method.as_str()) {
        &message.task_id
    } else {
        target
    };
    match (mirrored.name, source) {
        (Some(header), Some(source)) => {
            let decoded =
                decode_header_value(header).ok_or(MetaError::BadEncoding(Header::Name))?;
            if decoded != source.as_str() {
                return Err(MetaError::NameMismatch);
            }
        }
        (Some(_), None) => return Err(MetaError::NameMismatch),
        (None, _) if required && NAME_REQUIRED.contains(&method.as_str()) => {
            return Err(MetaError::MissingName)
        }
        (None, _) => {}
    }
    if mirrored.params && method != PARAM_METHOD {
        return Err(MetaError::ParamWithoutArguments);
    }
    Ok(())
}

#[cfg(test)]
mod tests;

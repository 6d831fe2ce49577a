//! Path checks before routing. The gateway routes on the path and the upstream routes on
//! it again after its own decoding and normalisation: wherever the two could disagree
//! about which resource a path names, the request is refused.
//!
//! Refused: dot segments (`.`, `..`, raw or percent-encoded in any case), encoded slashes and backslashes (`%2F`, `%5C`) and raw backslashes, empty
//! segments (`//`: some frameworks merge them, and `//host/x` reads as a host to a URL
//! parser), `;` (path parameters: `..;` is `..` to some servers), `%25` (double
//! encoding), encoded control characters (`%00`, `%0A`, …), malformed escapes and
//! escapes that do not decode to UTF-8.
//!
//! What passes is normalised as RFC 3986 §6.2.2 allows: escapes of unreserved characters
//! are decoded (`/%61dmin` is `/admin`, so it is routed as `/admin`, as the upstream
//! would read it) and the remaining escapes are written in upper case.

use super::query::hex;

/// Why a path is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    DotSegment,
    EncodedSeparator,
    EmptySegment,
    PathParameter,
    DoubleEncoding,
    ControlChar,
    BadEscape,
    NotUtf8,
}

impl PathError {
    pub fn message(self) -> &'static str {
        match self {
            PathError::DotSegment => "the path has a dot segment (. or ..)",
            PathError::EncodedSeparator => {
                "the path has an encoded slash or a backslash (raw or encoded)"
            }
            PathError::EmptySegment => "the path has an empty segment (//)",
            PathError::PathParameter => "the path has a ; (path parameters are not accepted)",
            PathError::DoubleEncoding => "the path has an encoded % (double encoding)",
            PathError::ControlChar => "the path decodes to a control character",
            PathError::BadEscape => "the path has a malformed percent-escape",
            PathError::NotUtf8 => "the path does not decode to UTF-8",
        }
    }
}

/// Checks an origin-form path (starting with `/`, without query) and returns its
/// normalised form.
pub fn normalise_path(path: &str) -> Result<String, PathError> {
    if path.contains('\\') {
        return Err(PathError::EncodedSeparator);
    }
    if path.contains(';') {
        return Err(PathError::PathParameter);
    }
    let mut out = String::with_capacity(path.len());
    // The leading `/` makes the first piece empty; it is not a segment.
    for (i, segment) in path.split('/').enumerate() {
        if i == 0 {
            continue;
        }
        out.push('/');
        let (decoded, normalised) = check_segment(segment)?;
        if decoded == "." || decoded == ".." {
            return Err(PathError::DotSegment);
        }
        out.push_str(&normalised);
    }
    // `/a//b`, `//a`, `/a//`; one trailing `/` is a path of its own and fine.
    if path.contains("//") {
        return Err(PathError::EmptySegment);
    }
    Ok(out)
}

/// The decoded segment (to recognise dot segments) and its normalised spelling.
fn check_segment(segment: &str) -> Result<(String, String), PathError> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let bytes = segment.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut normalised = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            // What the URI parser let through, copied as it is (non-ASCII arrives whole,
            // as UTF-8: the target was checked to be UTF-8).
            decoded.push(bytes[i]);
            normalised.push(bytes[i]);
            i += 1;
            continue;
        }
        let hi = bytes.get(i + 1).and_then(|b| hex(*b));
        let lo = bytes.get(i + 2).and_then(|b| hex(*b));
        let (Some(hi), Some(lo)) = (hi, lo) else {
            return Err(PathError::BadEscape);
        };
        let byte = hi << 4 | lo;
        match byte {
            b'/' | b'\\' => return Err(PathError::EncodedSeparator),
            b'%' => return Err(PathError::DoubleEncoding),
            b';' => return Err(PathError::PathParameter),
            0..=0x1f | 0x7f => return Err(PathError::ControlChar),
            _ => {}
        }
        decoded.push(byte);
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            normalised.push(byte);
        } else {
            normalised.extend([b'%', HEX[usize::from(hi)], HEX[usize::from(lo)]]);
        }
        i += 3;
    }
    let decoded = String::from_utf8(decoded).map_err(|_| PathError::NotUtf8)?;
    // Raw UTF-8 and ASCII only: cannot fail once `segment` was a `str`.
    let normalised = String::from_utf8(normalised).map_err(|_| PathError::NotUtf8)?;
    Ok((decoded, normalised))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_every_spelling_of_a_dot_segment() {
        for path in [
            "/mcp/..",
            "/mcp/../other",
            "/mcp/.",
            "/mcp/./x",
            "/..",
            "/mcp/%2e%2e/other",
            "/mcp/%2E%2E/other",
            "/mcp/.%2E/other",
            "/mcp/%2e./other",
            "/mcp/%2e",
            "/mcp/%2E/",
        ] {
            assert_eq!(normalise_path(path), Err(PathError::DotSegment), "{path}");
        }
    }

    #[test]
    fn refuses_other_ambiguous_paths() {
        for (path, error) in [
            ("/mcp%2fother", PathError::EncodedSeparator),
            ("/mcp/%2F..", PathError::EncodedSeparator),
            ("/mcp\\..\\x", PathError::EncodedSeparator),
            ("/mcp/%5c..", PathError::EncodedSeparator),
            ("/mcp/%5C", PathError::EncodedSeparator),
            ("/mcp//x", PathError::EmptySegment),
            ("//evil.example/mcp", PathError::EmptySegment),
            ("/mcp///", PathError::EmptySegment),
            ("/mcp/..;/admin", PathError::PathParameter),
            ("/mcp;jsessionid=1", PathError::PathParameter),
            ("/mcp/%3b", PathError::PathParameter),
            ("/mcp/%252e%252e", PathError::DoubleEncoding),
            ("/mcp/%00", PathError::ControlChar),
            ("/mcp%0d%0aX:1", PathError::ControlChar),
            ("/mcp/%7f", PathError::ControlChar),
            ("/mcp/%", PathError::BadEscape),
            ("/mcp/%2", PathError::BadEscape),
            ("/mcp/%g0", PathError::BadEscape),
            ("/mcp/%c0%ae%c0%ae", PathError::NotUtf8),
            ("/mcp/%ff", PathError::NotUtf8),
        ] {
            assert_eq!(normalise_path(path), Err(error), "{path}");
        }
    }

    #[test]
    fn normalises_what_passes() {
        for (path, normalised) in [
            ("/", "/"),
            ("/mcp", "/mcp"),
            ("/mcp/", "/mcp/"),
            ("/a.b/..c/c../...", "/a.b/..c/c../..."),
            ("/%61dmin/x", "/admin/x"),
            ("/mcp/a%2eb", "/mcp/a.b"),
            ("/mcp/%7e%2D%5f", "/mcp/~-_"),
            ("/mcp/a%20b%3a", "/mcp/a%20b%3A"),
            ("/mcp/%C3%A9/é", "/mcp/%C3%A9/é"),
            ("/x%41y%41z", "/xAyAz"),
        ] {
            assert_eq!(normalise_path(path).as_deref(), Ok(normalised), "{path}");
        }
    }
}

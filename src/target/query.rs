//! The one query-string parser of the gateway. Every rule about query parameters (the
//! legacy session id, tokens in the URL) reads the parameters through it, and the
//! upstream receives the query it writes back ([`Query::canonical`]), never the client's.
//!
//! It reads a query the way the most liberal upstream framework would: `&` and `;` both
//! separate parameters, `+` is a space, `%XX` is decoded in names and values. What
//! frameworks could read differently from each other is refused instead of guessed:
//! malformed escapes, decoded bytes that are not UTF-8, control characters (`%00`
//! truncates names in some frameworks), parameters without a name, and queries too long
//! or with too many parameters to be anything but an attack.

/// Longest query accepted, in bytes as received.
pub const MAX_QUERY_LEN: usize = 8 * 1024;

/// Most parameters accepted in one query.
pub const MAX_PARAMS: usize = 64;

/// Why a query is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryError {
    TooLong,
    TooManyParams,
    /// `%` not followed by two hexadecimal digits.
    BadEscape,
    /// A name or value that decodes to bytes that are not UTF-8.
    NotUtf8,
    /// A name or value that decodes to a control character (`%00`, `%0A`, …).
    ControlChar,
    /// `=value` with nothing before the `=`.
    EmptyName,
}

impl QueryError {
    pub fn message(self) -> &'static str {
        match self {
            QueryError::TooLong => "the query string is too long",
            QueryError::TooManyParams => "the query string has too many parameters",
            QueryError::BadEscape => "the query string has a malformed percent-escape",
            QueryError::NotUtf8 => "the query string does not decode to UTF-8",
            QueryError::ControlChar => "the query string decodes to a control character",
            QueryError::EmptyName => "the query string has a parameter without a name",
        }
    }
}

/// One parameter, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    /// `None` for a bare name (`?flag`), `Some("")` for `?flag=`.
    pub value: Option<String>,
    /// True when the name as received used `%` or `+`: its spelling on the wire differs
    /// from the decoded name.
    pub name_encoded: bool,
}

/// A parsed query: every parameter, in order, duplicates kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pub params: Vec<Param>,
}

impl Query {
    /// Parses a raw query (the part after `?`, without it).
    pub fn parse(raw: &str) -> Result<Query, QueryError> {
        if raw.len() > MAX_QUERY_LEN {
            return Err(QueryError::TooLong);
        }
        let mut params = Vec::new();
        for piece in raw.split(['&', ';']).filter(|p| !p.is_empty()) {
            if params.len() == MAX_PARAMS {
                return Err(QueryError::TooManyParams);
            }
            let (raw_name, raw_value) = match piece.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (piece, None),
            };
            let name = decode(raw_name)?;
            if name.is_empty() {
                return Err(QueryError::EmptyName);
            }
            params.push(Param {
                name,
                value: raw_value.map(decode).transpose()?,
                name_encoded: raw_name.contains(['%', '+']),
            });
        }
        Ok(Query { params })
    }

    /// The query as the gateway writes it: every byte of names and values but the
    /// unreserved `A-Z a-z 0-9 - . _ ~` as `%XX` (a space as `%20`, which form decoding
    /// and plain percent-decoding read alike, where `+` would differ), joined by `&`.
    pub fn canonical(&self) -> String {
        let mut out = String::new();
        for (i, p) in self.params.iter().enumerate() {
            if i > 0 {
                out.push('&');
            }
            encode_into(&mut out, &p.name);
            if let Some(value) = &p.value {
                out.push('=');
                encode_into(&mut out, value);
            }
        }
        out
    }
}

/// What a name means to the most liberal framework: the part before any `[`, `]`, `.`
/// (qs reads `a[]`, `a[x]` and, with `allowDots`, `a.x` as `a`) or `=` (a name
/// `a%3D` decodes to `a=`), without surrounding whitespace, in lower case. The few
/// non-ASCII letters whose case mapping lands in ASCII (`ſ`→`S`, `K`→`k`, `ı`→`I`,
/// `İ`→`i`; Java's `equalsIgnoreCase` folds them) are folded too. Rules compare this to
/// the lower-case names they protect.
pub fn base_name(name: &str) -> String {
    let cut = name.find(['[', ']', '.', '=']).unwrap_or(name.len());
    name[..cut]
        .trim()
        .chars()
        .map(|c| match c {
            '\u{17F}' => 's',
            '\u{212A}' => 'k',
            '\u{130}' | '\u{131}' => 'i',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

fn encode_into(out: &mut String, text: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
}

/// Decodes `+` and `%XX`; strict (see the module documentation).
fn decode(raw: &str) -> Result<String, QueryError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = bytes.get(i + 1).and_then(|b| hex(*b));
                let lo = bytes.get(i + 2).and_then(|b| hex(*b));
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(QueryError::BadEscape);
                };
                out.push(hi << 4 | lo);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    let text = String::from_utf8(out).map_err(|_| QueryError::NotUtf8)?;
    if text.chars().any(char::is_control) {
        return Err(QueryError::ControlChar);
    }
    Ok(text)
}

pub(crate) fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(raw: &str) -> Vec<(String, Option<String>, bool)> {
        Query::parse(raw)
            .unwrap()
            .params
            .into_iter()
            .map(|p| (p.name, p.value, p.name_encoded))
            .collect()
    }

    fn p(name: &str, value: Option<&str>, encoded: bool) -> (String, Option<String>, bool) {
        (name.into(), value.map(Into::into), encoded)
    }

    #[test]
    fn splits_on_ampersand_and_semicolon_and_decodes() {
        assert_eq!(
            names("a=1;b=2&&c&d=&e%5Fx=%41+b&f+g=h%3Dk"),
            vec![
                p("a", Some("1"), false),
                p("b", Some("2"), false),
                p("c", None, false),
                p("d", Some(""), false),
                p("e_x", Some("A b"), true),
                p("f g", Some("h=k"), true),
            ]
        );
        assert_eq!(names(""), vec![]);
        assert_eq!(names("&;&"), vec![]);
        // Only the first `=` separates; later ones belong to the value.
        assert_eq!(names("a=b=c"), vec![p("a", Some("b=c"), false)]);
        // Non-ASCII as received is kept; encoded UTF-8 is decoded.
        assert_eq!(
            names("n=%C3%A9&m=é"),
            vec![p("n", Some("é"), false), p("m", Some("é"), false)]
        );
    }

    #[test]
    fn refuses_what_frameworks_could_read_differently() {
        for (raw, error) in [
            ("a=%", QueryError::BadEscape),
            ("a=%4", QueryError::BadEscape),
            ("a=%zz", QueryError::BadEscape),
            ("%=1", QueryError::BadEscape),
            ("a=%ff", QueryError::NotUtf8),
            ("a=%C0%AE", QueryError::NotUtf8),
            ("sessionId%00=1", QueryError::ControlChar),
            ("a=%00", QueryError::ControlChar),
            ("a=%0d%0a", QueryError::ControlChar),
            ("a=%7F", QueryError::ControlChar),
            ("=1", QueryError::EmptyName),
            ("a=1&=", QueryError::EmptyName),
        ] {
            assert_eq!(Query::parse(raw), Err(error), "{raw}");
        }
        let long = format!("a={}", "x".repeat(MAX_QUERY_LEN));
        assert_eq!(Query::parse(&long), Err(QueryError::TooLong));
        let many = vec!["a=1"; MAX_PARAMS + 1].join("&");
        assert_eq!(Query::parse(&many), Err(QueryError::TooManyParams));
        let enough = vec!["a=1"; MAX_PARAMS].join(";");
        assert_eq!(Query::parse(&enough).unwrap().params.len(), MAX_PARAMS);
    }

    #[test]
    fn canonical_form_is_unambiguous_and_stable() {
        for (raw, canonical) in [
            ("a=1;b=2", "a=1&b=2"),
            ("a=x;y", "a=x&y"),
            ("a=%3B%26%3D%2B", "a=%3B%26%3D%2B"),
            ("q=a+b%20c", "q=a%20b%20c"),
            ("e%5Fx=%7e", "e_x=~"),
            ("s=*!'()", "s=%2A%21%27%28%29"),
            ("flag&empty=", "flag&empty="),
            ("n=é", "n=%C3%A9"),
            ("sessionId=v1.k-x_y", "sessionId=v1.k-x_y"),
        ] {
            let once = Query::parse(raw).unwrap().canonical();
            assert_eq!(once, canonical, "{raw}");
            // The canonical form reads back to the same parameters.
            let decoded = |q: &str| -> Vec<(String, Option<String>)> {
                Query::parse(q)
                    .unwrap()
                    .params
                    .into_iter()
                    .map(|p| (p.name, p.value))
                    .collect()
            };
            assert_eq!(decoded(&once), decoded(raw), "{raw}");
            assert_eq!(Query::parse(&once).unwrap().canonical(), once, "{raw}");
        }
    }

    #[test]
    fn base_names_fold_what_frameworks_fold() {
        for (name, base) in [
            ("sessionId", "sessionid"),
            ("SESSION_ID", "session_id"),
            ("sessionId[]", "sessionid"),
            ("sessionId[0]", "sessionid"),
            ("sessionId.x", "sessionid"),
            (" access_token ", "access_token"),
            ("access_token=", "access_token"),
            ("access_token]", "access_token"),
            ("my_access_token", "my_access_token"),
            ("[x]", ""),
            ("acce\u{17F}\u{17F}_to\u{212A}en", "access_token"),
            ("sess\u{131}on\u{130}d", "sessionid"),
        ] {
            assert_eq!(base_name(name), base, "{name}");
        }
    }
}

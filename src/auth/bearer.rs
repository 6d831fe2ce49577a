//! Where a bearer token may come from: the `Authorization` header only (RFC 6750 §2.1),
//! scheme matched case-insensitively (RFC 9110 §11.1). Tokens in the query string are
//! refused, never forwarded; two `Authorization` headers are a malformed request.

use http::HeaderMap;

use crate::target::query::{base_name, Query};

/// Longest token accepted; real access tokens are a few KiB at most.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerError {
    /// No `Authorization` header (or another scheme): the client must authenticate.
    Missing,
    /// `Bearer` with nothing usable after it.
    Malformed,
    /// The token is longer than [`MAX_TOKEN_LEN`].
    TooLarge,
    /// `access_token` in the query string (RFC 6750 §2.3 is not supported).
    InQuery,
    /// More than one `Authorization` header.
    Multiple,
}

impl BearerError {
    pub fn reason(self) -> &'static str {
        match self {
            BearerError::Missing => "missing_token",
            BearerError::Malformed => "malformed_header",
            BearerError::TooLarge => "token_too_large",
            BearerError::InQuery => "token_in_query",
            BearerError::Multiple => "multiple_authorization_headers",
        }
    }
}

/// The bearer token of a request.
pub fn bearer_token<'h>(headers: &'h HeaderMap, query: &Query) -> Result<&'h str, BearerError> {
    if query_has_token(query) {
        return Err(BearerError::InQuery);
    }
    let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
    let value = values.next().ok_or(BearerError::Missing)?;
    if values.next().is_some() {
        return Err(BearerError::Multiple);
    }
    if value.len() > MAX_TOKEN_LEN + 16 {
        return Err(BearerError::TooLarge);
    }
    let value = value.as_bytes();
    let (scheme, token) = match value.iter().position(|&b| b == b' ') {
        Some(space) => (&value[..space], &value[space + 1..]),
        None => (value, &[][..]),
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        // Not visible ASCII at all is malformed whatever the scheme says.
        return Err(if value.iter().all(|&b| is_header_text(b)) {
            BearerError::Missing
        } else {
            BearerError::Malformed
        });
    }
    let start = token.iter().position(|&b| b != b' ').unwrap_or(token.len());
    let end = token
        .iter()
        .rposition(|&b| b != b' ')
        .map_or(start, |i| i + 1);
    let token = &token[start..end];
    // The check above bounds the header cheaply; this one is the limit itself.
    if token.len() > MAX_TOKEN_LEN {
        return Err(BearerError::TooLarge);
    }
    // token68 (RFC 9110 §11.2). This runs on every request over a token of a KiB or
    // more: no early exit and no branches per byte, so the compiler checks many bytes
    // per instruction.
    if token.is_empty() || !token.iter().fold(true, |ok, &b| ok & is_token68(b)) {
        return Err(BearerError::Malformed);
    }
    // token68 characters are ASCII, so this cannot fail.
    std::str::from_utf8(token).map_err(|_| BearerError::Malformed)
}

/// What `HeaderValue::to_str` accepts: visible ASCII, space and tab.
fn is_header_text(b: u8) -> bool {
    (b' '..0x7f).contains(&b) || b == b'\t'
}

/// The token68 alphabet: letters, digits, `-._~+/` and `=` (padding). Non-short-circuit
/// operators on purpose (see the caller).
fn is_token68(b: u8) -> bool {
    let letter = (b | 0x20).wrapping_sub(b'a') < 26;
    let digit = b.wrapping_sub(b'0') < 10;
    letter
        | digit
        | (b == b'-')
        | (b == b'.')
        | (b == b'_')
        | (b == b'~')
        | (b == b'+')
        | (b == b'/')
        | (b == b'=')
}

/// True when any parameter could be read as `access_token` by some framework (decoded,
/// in any case, `;`-separated, `access_token%3D=…`: see `target::query::base_name`).
/// (A query that cannot be read never gets here: the target step refuses it.)
pub fn query_has_token(query: &Query) -> bool {
    query.params.iter().any(|p| is_token_name(&p.name))
}

/// True when a framework could read the parameter `name` (decoded) as `access_token`.
pub fn is_token_name(name: &str) -> bool {
    base_name(name) == "access_token"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(raw: &str) -> Query {
        Query::parse(raw).unwrap()
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(http::header::AUTHORIZATION, v.parse().unwrap());
        }
        h
    }

    /// The straightforward reading of the rules, to check the table-driven one against.
    fn reference(value: &[u8]) -> Result<String, BearerError> {
        let value = std::str::from_utf8(value)
            .ok()
            .filter(|v| v.bytes().all(|b| (b' '..0x7f).contains(&b) || b == b'\t'))
            .ok_or(BearerError::Malformed)?;
        let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(BearerError::Missing);
        }
        let token = token.trim_matches(' ');
        let ok = |b: u8| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
        };
        if token.is_empty() || !token.bytes().all(ok) {
            return Err(BearerError::Malformed);
        }
        Ok(token.to_string())
    }

    #[test]
    fn token68_alphabet_is_exact() {
        for b in 0..=255u8 {
            let expected = b.is_ascii_alphanumeric()
                || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=');
            assert_eq!(is_token68(b), expected, "byte {b:#04x}");
        }
    }

    #[test]
    fn agrees_with_the_plain_reading_on_generated_headers() {
        let pieces: [&[u8]; 14] = [
            b"Bearer",
            b"bearer",
            b"BEARER",
            b"Basic",
            b" ",
            b"  ",
            b"\t",
            b"abc",
            b"A-._~+/=",
            b"\xc3\xa9",
            b"\x7f",
            b",",
            b"\"",
            b"x",
        ];
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20_000 {
            let mut value = Vec::new();
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut s = state;
            for _ in 0..(s % 6) + 1 {
                s /= 6;
                value.extend_from_slice(pieces[(s % pieces.len() as u64) as usize]);
                s /= pieces.len() as u64;
            }
            let Ok(header) = http::HeaderValue::from_bytes(&value) else {
                continue;
            };
            let mut h = HeaderMap::new();
            h.insert(http::header::AUTHORIZATION, header);
            let got = bearer_token(&h, &Query::default()).map(str::to_string);
            assert_eq!(
                got,
                reference(&value),
                "{:?}",
                String::from_utf8_lossy(&value)
            );
            seen.insert(got.map(|_| "token").map_err(BearerError::reason));
        }
        // Every outcome was exercised.
        for outcome in [Ok("token"), Err("missing_token"), Err("malformed_header")] {
            assert!(seen.contains(&outcome), "{outcome:?} never generated");
        }
    }

    #[test]
    fn scheme_is_case_insensitive() {
        assert_eq!(
            bearer_token(&headers(&["Bearer abc.def.ghi"]), &Query::default()),
            Ok("abc.def.ghi")
        );
        assert_eq!(
            bearer_token(&headers(&["bearer abc"]), &Query::default()),
            Ok("abc")
        );
        assert_eq!(
            bearer_token(&headers(&["BEARER  abc "]), &Query::default()),
            Ok("abc")
        );
    }

    #[test]
    fn refusals() {
        assert_eq!(
            bearer_token(&headers(&[]), &Query::default()),
            Err(BearerError::Missing)
        );
        assert_eq!(
            bearer_token(&headers(&["Basic dXNlcg=="]), &Query::default()),
            Err(BearerError::Missing)
        );
        assert_eq!(
            bearer_token(&headers(&["Bearer"]), &Query::default()),
            Err(BearerError::Malformed)
        );
        assert_eq!(
            bearer_token(&headers(&["Bearer "]), &Query::default()),
            Err(BearerError::Malformed)
        );
        assert_eq!(
            bearer_token(&headers(&["Bearer a b"]), &Query::default()),
            Err(BearerError::Malformed)
        );
        assert_eq!(
            bearer_token(&headers(&["Bearer a", "Bearer b"]), &Query::default()),
            Err(BearerError::Multiple)
        );
        let at_limit = format!("Bearer {}", "a".repeat(MAX_TOKEN_LEN));
        assert_eq!(
            bearer_token(&headers(&[&at_limit]), &Query::default()).map(str::len),
            Ok(MAX_TOKEN_LEN)
        );
        let one_over = format!("Bearer {}", "a".repeat(MAX_TOKEN_LEN + 1));
        assert_eq!(
            bearer_token(&headers(&[&one_over]), &Query::default()),
            Err(BearerError::TooLarge)
        );
        let huge = format!("Bearer {}", "a".repeat(MAX_TOKEN_LEN + 100));
        assert_eq!(
            bearer_token(&headers(&[&huge]), &Query::default()),
            Err(BearerError::TooLarge)
        );
        assert_eq!(
            bearer_token(&headers(&["Bearer a"]), &q("x=1&access_token=abc")),
            Err(BearerError::InQuery)
        );
        assert_eq!(
            bearer_token(&headers(&[]), &q("access_token")),
            Err(BearerError::InQuery)
        );
        assert_eq!(
            bearer_token(&headers(&["Bearer a"]), &q("my_access_token=1")),
            Ok("a")
        );
        for query in [
            "access_token=t",
            "access_token",
            "ACCESS_TOKEN=t",
            "Access_Token=t",
            "access%5Ftoken=t",
            "access%5ftoken=t",
            "%61ccess_token=t",
            "x=1;access_token=t",
            "access_token%3D=t",
            "access_token%3Dt",
            "+access_token=t",
            "access_token%20=t",
            "access_token[]=t",
            "access_token[0]=t",
            "access_token.x=t",
        ] {
            assert_eq!(
                bearer_token(&headers(&["Bearer a"]), &q(query)),
                Err(BearerError::InQuery),
                "{query}"
            );
        }
    }
}

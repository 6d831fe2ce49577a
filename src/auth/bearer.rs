//! Where a bearer token may come from: the `Authorization` header only (RFC 6750 §2.1),
//! scheme matched case-insensitively (RFC 9110 §11.1). Tokens in the query string are
//! refused, never forwarded; two `Authorization` headers are a malformed request.

use http::HeaderMap;

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
pub fn bearer_token<'h>(
    headers: &'h HeaderMap,
    query: Option<&str>,
) -> Result<&'h str, BearerError> {
    if query.is_some_and(query_has_token) {
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
    let value = value.to_str().map_err(|_| BearerError::Malformed)?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(BearerError::Missing);
    }
    let token = token.trim_matches(' ');
    // token68 (RFC 9110 §11.2), checked byte by byte: this runs on every request.
    let token68 = |b: u8| {
        b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
    };
    if token.is_empty() || !token.bytes().all(token68) {
        return Err(BearerError::Malformed);
    }
    Ok(token)
}

fn query_has_token(query: &str) -> bool {
    query
        .split('&')
        .any(|pair| pair.split('=').next() == Some("access_token"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(http::header::AUTHORIZATION, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn scheme_is_case_insensitive() {
        assert_eq!(
            bearer_token(&headers(&["Bearer abc.def.ghi"]), None),
            Ok("abc.def.ghi")
        );
        assert_eq!(bearer_token(&headers(&["bearer abc"]), None), Ok("abc"));
        assert_eq!(bearer_token(&headers(&["BEARER  abc "]), None), Ok("abc"));
    }

    #[test]
    fn refusals() {
        assert_eq!(bearer_token(&headers(&[]), None), Err(BearerError::Missing));
        assert_eq!(
            bearer_token(&headers(&["Basic dXNlcg=="]), None),
            Err(BearerError::Missing)
        );
        assert_eq!(
            bearer_token(&headers(&["Bearer"]), None),
            Err(BearerError::Malformed)
        );
        assert_eq!(
            bearer_token(&headers(&["Bearer "]), None),
            Err(BearerError::Malformed)
        );
        assert_eq!(
            bearer_token(&headers(&["Bearer a b"]), None),
            Err(BearerError::Malformed)
        );
        assert_eq!(
            bearer_token(&headers(&["Bearer a", "Bearer b"]), None),
            Err(BearerError::Multiple)
        );
        let huge = format!("Bearer {}", "a".repeat(MAX_TOKEN_LEN + 100));
        assert_eq!(
            bearer_token(&headers(&[&huge]), None),
            Err(BearerError::TooLarge)
        );
        assert_eq!(
            bearer_token(&headers(&["Bearer a"]), Some("x=1&access_token=abc")),
            Err(BearerError::InQuery)
        );
        assert_eq!(
            bearer_token(&headers(&[]), Some("access_token")),
            Err(BearerError::InQuery)
        );
        assert_eq!(
            bearer_token(&headers(&["Bearer a"]), Some("my_access_token=1")),
            Ok("a")
        );
    }
}

//! `WWW-Authenticate` challenges for MCP clients (RFC 6750 §3, RFC 9728 §5.1): every 401
//! and 403 names the protected resource metadata and the scopes the client should ask
//! for, so a client that has never seen the gateway can discover and step up.

/// Error codes of RFC 6750 §3.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerErrorCode {
    InvalidRequest,
    InvalidToken,
    InsufficientScope,
}

impl BearerErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            BearerErrorCode::InvalidRequest => "invalid_request",
            BearerErrorCode::InvalidToken => "invalid_token",
            BearerErrorCode::InsufficientScope => "insufficient_scope",
        }
    }
}

/// Builds the header value. `scope` is space-separated; `description` must be a fixed
/// text (it is quoted, never escaped, so it may not contain `"` or `\`).
pub fn www_authenticate(
    resource_metadata: &str,
    scope: &str,
    error: Option<(BearerErrorCode, &str)>,
) -> String {
    let mut out = format!(r#"Bearer resource_metadata="{resource_metadata}""#);
    if !scope.is_empty() {
        out.push_str(&format!(r#", scope="{scope}""#));
    }
    if let Some((code, description)) = error {
        out.push_str(&format!(r#", error="{}""#, code.as_str()));
        let safe = !description.contains(['"', '\\']);
        if safe && !description.is_empty() {
            out.push_str(&format!(r#", error_description="{description}""#));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_challenge_names_metadata_and_scope() {
        assert_eq!(
            www_authenticate(
                "https://gw/.well-known/oauth-protected-resource/mcp",
                "mcp:tools",
                None
            ),
            r#"Bearer resource_metadata="https://gw/.well-known/oauth-protected-resource/mcp", scope="mcp:tools""#
        );
    }

    #[test]
    fn errors_add_code_and_description() {
        assert_eq!(
            www_authenticate(
                "https://gw/m",
                "a b",
                Some((BearerErrorCode::InsufficientScope, "needs a b"))
            ),
            r#"Bearer resource_metadata="https://gw/m", scope="a b", error="insufficient_scope", error_description="needs a b""#
        );
        assert_eq!(
            www_authenticate(
                "https://gw/m",
                "",
                Some((BearerErrorCode::InvalidToken, "bad \"quote\""))
            ),
            r#"Bearer resource_metadata="https://gw/m", error="invalid_token""#
        );
    }
}

//! The transport to one token endpoint: builds the RFC 8693 token-exchange,
//! on-behalf-of and client-credentials requests, attaches client authentication, reads a
//! bounded answer and hands it to `response` (or `on_behalf_of`) for validation. No
//! caching here (see `cache`).

use std::time::{Duration, Instant};

use super::on_behalf_of;
use super::response::{parse_error, parse_success_for};
use super::{
    ClientAuth, ExchangeError, ExchangeRequest, IssuedToken, ACCESS_TOKEN_TYPE,
    TOKEN_EXCHANGE_GRANT,
};

/// Largest token endpoint answer read; a token response is a few KiB at most.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// A client of one authorization server's token endpoint, authenticated as the gateway.
/// Built once per route at start-up; cheap to share (`reqwest::Client` is a handle).
#[derive(Debug)]
pub struct TokenClient {
    http: reqwest::Client,
    endpoint: url::Url,
    auth: ClientAuth,
}

impl TokenClient {
    /// `http` should not follow redirects (a redirected POST would re-send credentials
    /// elsewhere) and should have connect and total timeouts: see [`TokenClient::http_client`].
    pub fn new(http: reqwest::Client, endpoint: url::Url, auth: ClientAuth) -> TokenClient {
        TokenClient {
            http,
            endpoint,
            auth,
        }
    }

    /// An HTTP client suited to token endpoints: no redirects, `timeout` for the whole
    /// exchange, and at most `timeout` to connect.
    pub fn http_client(timeout: Duration) -> Result<reqwest::Client, ExchangeError> {
        reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("drawbridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ExchangeError::Transport(describe(&e)))
    }

    /// RFC 8693 §2.1: trades the caller's access token for one meant for the upstream.
    pub async fn exchange(&self, req: &ExchangeRequest<'_>) -> Result<IssuedToken, ExchangeError> {
        let mut form = vec![
            ("grant_type", TOKEN_EXCHANGE_GRANT),
            ("subject_token", req.subject_token),
            ("subject_token_type", ACCESS_TOKEN_TYPE),
            ("requested_token_type", ACCESS_TOKEN_TYPE),
        ];
        if let Some(audience) = req.audience {
            form.push(("audience", audience));
        }
        if let Some(resource) = req.resource {
            form.push(("resource", resource));
        }
        let scope = req.scopes.join(" ");
        if !scope.is_empty() {
            form.push(("scope", &scope));
        }
        self.post(&form, req.scopes).await
    }

    /// RFC 6749 §4.4: a token for the gateway itself. The upstream then sees the gateway,
    /// not the user.
    pub async fn client_credentials(
        &self,
        scopes: &[String],
        audience: Option<&str>,
        resource: Option<&str>,
    ) -> Result<IssuedToken, ExchangeError> {
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(audience) = audience {
            form.push(("audience", audience));
        }
        if let Some(resource) = resource {
            form.push(("resource", resource));
        }
        let scope = scopes.join(" ");
        if !scope.is_empty() {
            form.push(("scope", &scope));
        }
        self.post(&form, scopes).await
    }

    /// Entra ID's on-behalf-of grant: the caller's token as the `assertion`, for the
    /// upstream API's `scopes`. Client authentication goes in the body (Entra documents
    /// `client_secret` or `client_assertion` there).
    pub async fn on_behalf_of(
        &self,
        assertion: &str,
        scopes: &[String],
    ) -> Result<IssuedToken, ExchangeError> {
        let scope = scopes.join(" ");
        let form = on_behalf_of::form(assertion, &scope);
        let (status, body, received_at) = self.send(&form).await?;
        on_behalf_of::answer(status, &body, received_at, scopes)
    }

    /// Sends `grant` and validates the answer against the `requested` scopes.
    async fn post(
        &self,
        grant: &[(&str, &str)],
        requested: &[String],
    ) -> Result<IssuedToken, ExchangeError> {
        let (status, body, received_at) = self.send(grant).await?;
        match status {
            200 => parse_success_for(&body, received_at, requested),
            s if (200..300).contains(&s) => Err(ExchangeError::InvalidResponse(
                "success status other than 200",
            )),
            s => Err(parse_error(s, &body)),
        }
    }

    /// Sends `grant` with the client's authentication; the answer's status, its body
    /// (bounded) and when it arrived.
    async fn send(&self, grant: &[(&str, &str)]) -> Result<(u16, Vec<u8>, Instant), ExchangeError> {
        let credentials = self
            .auth
            .credentials(&self.endpoint)
            .ok_or(ExchangeError::Transport(
                "cannot sign the client assertion".into(),
            ))?;
        let mut form: Vec<(&str, &str)> = grant.to_vec();
        form.extend(credentials.fields.iter().map(|(k, v)| (*k, v.as_str())));

        let mut request = self
            .http
            .post(self.endpoint.clone())
            .header(http::header::ACCEPT, "application/json")
            .form(&form);
        if let Some(authorization) = credentials.authorization {
            request = request.header(http::header::AUTHORIZATION, authorization);
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| ExchangeError::Transport(describe(&e)))?;
        // Lifetimes count from when the answer arrived, not from when it is parsed.
        let received_at = Instant::now();
        let status = response.status().as_u16();

        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| ExchangeError::Transport(describe(&e)))?
        {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(if status == 200 {
                    ExchangeError::InvalidResponse(super::TOO_LARGE)
                } else {
                    ExchangeError::Rejected {
                        status,
                        error: None,
                    }
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, body, received_at))
    }
}

/// A transport failure in words, without the URL (it may carry a query) and without
/// anything from the request: the kind of failure and the I/O cause.
fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else if error.is_body() || error.is_decode() {
        "answer broken off"
    } else if error.is_builder() {
        "request could not be built"
    } else {
        "request failed"
    };
    let mut cause = std::error::Error::source(error);
    let mut root = None;
    while let Some(inner) = cause {
        root = Some(inner);
        cause = inner.source();
    }
    match root {
        Some(root) => format!("{kind}: {root}"),
        None => kind.to_string(),
    }
}

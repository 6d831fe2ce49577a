//! What the gateway writes itself, in place of the upstream: refusals and RFC 9728
//! metadata documents.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;

use super::origin;
use crate::refusal::Refusal;
use crate::telemetry::ids::X_REQUEST_ID;

/// A refusal as JSON, with its status and headers, and the CORS headers for an allowed browser origin, so that a browser
/// client can read the refusal and its challenge.
pub(super) async fn write_refusal(
    session: &mut Session,
    status: u16,
    body: Bytes,
    refusal: &Refusal,
    cors: Option<&http::HeaderValue>,
    request_id: Option<&http::HeaderValue>,
) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(9))?;
    if let Some(id) = request_id {
        resp.insert_header(&X_REQUEST_ID, id)?;
    }
    if let Some(origin) = cors {
        origin::add_response_headers(&mut resp, origin)?;
    }
    resp.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    resp.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    if let Some(challenge) = refusal.www_authenticate() {
        resp.insert_header(http::header::WWW_AUTHENTICATE, challenge)?;
    }
    if let Some(methods) = refusal.allow() {
        resp.insert_header(http::header::ALLOW, methods)?;
    }
    if let Some(seconds) = refusal.retry_after() {
        resp.insert_header(http::header::RETRY_AFTER, seconds)?;
    }
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await
}

/// Protected resource metadata (RFC 9728) for GET, HEAD and a CORS preflight, readable
/// from any origin; other methods get 405.
pub(super) async fn write_metadata(
    session: &mut Session,
    body: Bytes,
    request_id: Option<&http::HeaderValue>,
) -> Result<()> {
    let (status, body) = match session.req_header().method {
        http::Method::GET => (200, body),
        http::Method::HEAD => (200, Bytes::new()),
        http::Method::OPTIONS => (204, Bytes::new()),
        _ => (405, Bytes::new()),
    };
    let mut resp = ResponseHeader::build(status, Some(7))?;
    if let Some(id) = request_id {
        resp.insert_header(&X_REQUEST_ID, id)?;
    }
    resp.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    resp.insert_header(http::header::CACHE_CONTROL, "max-age=300")?;
    resp.insert_header(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")?;
    resp.insert_header(
        http::header::ACCESS_CONTROL_ALLOW_METHODS,
        "GET, HEAD, OPTIONS",
    )?;
    resp.insert_header(
        http::header::ACCESS_CONTROL_ALLOW_HEADERS,
        "mcp-protocol-version",
    )?;
    if status == 405 {
        resp.insert_header(http::header::ALLOW, "GET, HEAD, OPTIONS")?;
    }
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await
}

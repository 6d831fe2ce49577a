//! Holding the whole request body before the upstream is contacted (DESIGN step 3).
//!
//! Pingora only reads a body after it has connected upstream and sent the header. To
//! inspect first, the body is read in `request_filter` with Pingora's retry buffer
//! enabled; Pingora then replays that buffer to the upstream. The buffer holds 64 KiB;
//! larger bodies go through `large_body` (see ../shared/notes/pingora-request-body.md).

use bytes::{Bytes, BytesMut};
use pingora::proxy::Session;
use pingora::Result;

use crate::refusal::Refusal;

/// Bodies up to this size are replayed from Pingora's retry buffer.
pub const RETRY_BUFFER_LIMIT: usize = 64 * 1024;

/// Reads the whole request body, refusing bodies over `limit`.
pub async fn read_whole_body(
    session: &mut Session,
    limit: usize,
) -> Result<std::result::Result<Bytes, Refusal>> {
    let declared = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Ok(Err(Refusal::BodyTooLarge));
    }
    let expects_continue = session
        .req_header()
        .headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects_continue {
        session
            .as_downstream_mut()
            .write_continue_response()
            .await?;
    }
    session.as_downstream_mut().enable_retry_buffering();
    let mut body = BytesMut::with_capacity(declared.unwrap_or(1024));
    while let Some(chunk) = session.as_downstream_mut().read_request_body().await? {
        if body.len() + chunk.len() > limit {
            return Ok(Err(Refusal::BodyTooLarge));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Ok(body.freeze()))
}

//! Holding the whole request body before the upstream is contacted (step 3 of the request path).
//!
//! Pingora only reads a body after it has connected upstream and sent the header. To
//! inspect first, the body is read in `request_filter` with Pingora's retry buffer
//! enabled; Pingora then replays that buffer to the upstream. The buffer holds 64 KiB;
//! larger bodies go through `delegate` (see docs/ARCHITECTURE.md, "Holding the whole body").
//!
//! Reading is bounded in time as well as size: the whole body must arrive within
//! `limits.body_timeout` (408). A body whose framing is broken (bad chunked encoding) is
//! the client's fault (400); a client that goes away mid-body gets no answer and no
//! error log line, since nobody is left to read either.

use bytes::{Bytes, BytesMut};
use pingora::proxy::Session;
use pingora::{Error, ErrorType, Result};

use crate::refusal::Refusal;

/// Bodies up to this size are replayed from Pingora's retry buffer.
pub const RETRY_BUFFER_LIMIT: usize = 64 * 1024;

/// A refused oversized body is read and discarded up to this size, so that the client,
/// still sending, can read the 413 instead of seeing a reset. Beyond it the connection
/// is closed.
const DRAIN_LIMIT: usize = 32 << 20;

/// Discards the rest of a refused body when that is cheap enough; otherwise makes sure
/// the connection is not reused.
async fn discard_rest(session: &mut Session, declared: Option<usize>) -> Result<()> {
    if declared.is_some_and(|n| n <= DRAIN_LIMIT) {
        session.as_downstream_mut().drain_request_body().await?;
    } else {
        session.set_keepalive(None);
    }
    Ok(())
}

/// Reads the whole request body, refusing bodies over `limit`, bodies that arrive too
/// slowly and bodies whose framing is broken. `Err` only when the client is gone (marked
/// as the client's error, so that Pingora logs nothing for it).
///
/// The whole body must arrive within the session's read timeout, which the listener sets
/// to `limits.body_timeout` on every HTTP/1 request (`server::connections`; Pingora itself
/// applies it only to each read), else within `body_timeout` (HTTP/2 streams, whose
/// sessions Pingora creates with none).
pub async fn read_whole_body(
    session: &mut Session,
    limit: usize,
    body_timeout: std::time::Duration,
) -> Result<std::result::Result<Bytes, Refusal>> {
    let within = session.get_read_timeout().unwrap_or(body_timeout);
    let outcome = match tokio::time::timeout(within, read_bounded(session, limit)).await {
        Ok(Ok(read)) => return Ok(read),
        Ok(Err(e)) => body_failure(e)?,
        Err(_elapsed) => Refusal::BodyTimeout,
    };
    // The rest of the body, if any, is never read: the connection cannot be reused.
    session.set_keepalive(None);
    Ok(Err(outcome))
}

/// What a failed body read means: a timeout (408) or broken framing (400) is answered;
/// a client that closed or reset the connection is not (`Err`, marked downstream).
fn body_failure(e: Box<Error>) -> Result<Refusal> {
    match e.etype() {
        ErrorType::ReadTimedout => Ok(Refusal::BodyTimeout),
        ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError => {
            Err(e.into_down())
        }
        _ => Ok(Refusal::MalformedBody),
    }
}

async fn read_bounded(
    session: &mut Session,
    limit: usize,
) -> Result<std::result::Result<Bytes, Refusal>> {
    let declared = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    let expects_continue = session
        .req_header()
        .headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if declared.is_some_and(|n| n > limit) {
        if expects_continue {
            // The client waits for 100 Continue and has sent nothing: just refuse.
            session.set_keepalive(None);
        } else {
            discard_rest(session, declared).await?;
        }
        return Ok(Err(Refusal::BodyTooLarge));
    }
    if expects_continue {
        session
            .as_downstream_mut()
            .write_continue_response()
            .await?;
    }
    session.as_downstream_mut().enable_retry_buffering();
    // Chunks are kept as they arrive; a body that came in one chunk (the usual case) is
    // used as it is, without a copy.
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut total = 0;
    while let Some(chunk) = session.as_downstream_mut().read_request_body().await? {
        total += chunk.len();
        if total > limit {
            discard_rest(session, declared).await?;
            return Ok(Err(Refusal::BodyTooLarge));
        }
        chunks.push(chunk);
    }
    if chunks.len() == 1 {
        return Ok(Ok(chunks.swap_remove(0)));
    }
    let mut body = BytesMut::with_capacity(total);
    for chunk in &chunks {
        body.extend_from_slice(chunk);
    }
    Ok(Ok(body.freeze()))
}

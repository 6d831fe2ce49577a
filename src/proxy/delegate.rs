//! Requests the main pipeline hands to a *subrequest*: bodies larger than Pingora's
//! 64 KiB retry buffer, and list requests whose JSON answers must be held whole.
//!
//! The body has already been read and inspected whole in the main request. The same
//! pipeline runs again with a fresh context, fed the held body, and its response is piped
//! back to the client. The main request's decisions travel in a [`Handoff`] so the
//! subrequest does not redo them; see docs/ARCHITECTURE.md ("Holding the whole body") for the
//! mechanics and caveats. Pingora hands the subrequest the main request's header as
//! HTTP/1 text; an HTTP/2 request's header is first put in HTTP/1.1 form
//! ([`as_http11_request`]).
//!
//! Why list requests: in the normal proxy path Pingora writes the response header before
//! the first body byte arrives, so a JSON list answer that turns out not to be
//! filterable could only become an error *inside* a 200. Piped through a subrequest, the
//! header of a JSON answer is held until its (filtered) body is complete, and a failed
//! filter turns it into a 502.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use pingora::protocols::http::HttpTask;
use pingora::proxy::subrequest::pipe::{pipe_subrequest, InputBody, InputBodyType};
use pingora::proxy::subrequest::{BodyMode, Ctx as SubCtx};
use pingora::proxy::Session;
use pingora::{Error, ErrorType, OkOrErr, Result};

use super::ctx::RequestCtx;
use crate::auth::Principal;
use crate::config::RouteMatch;
use crate::mcp::jsonrpc::Inspected;
use crate::policy::Permit;

use super::body::RETRY_BUFFER_LIMIT;
use super::failure::{classify, Failure, UNFILTERABLE};
use crate::refusal::Refusal;

/// What the main request decided, for the subrequest to act on.
pub struct Handoff {
    /// The main request's configuration: a reload in between must not change it.
    pub state: std::sync::Arc<super::GatewayState>,
    pub route: RouteMatch,
    pub upstream_credential: Option<(http::HeaderName, http::HeaderValue)>,
    pub upstream_session_id: Option<String>,
    pub reusable_seal: Option<String>,
    pub pending_lists: crate::mcp::filter::PendingLists,
    pub principal: Option<Arc<Principal>>,
    pub permit: Permit,
    pub inspected: Inspected,
    pub body_len: usize,
    pub ids: Option<crate::telemetry::ids::RequestIds>,
    /// Set by the subrequest when a JSON list answer could not be filtered: the main
    /// request, which holds that answer's header, then sends a 502.
    pub list_failure: Arc<AtomicBool>,
}

/// True when Pingora must prepare a subrequest spawner: for every POST of a main
/// request, since whether it carries a list request is known only once its body is read
/// (the spawner is one reference-count increment).
pub fn may_need_subrequest(session: &Session) -> bool {
    session.subrequest_ctx.is_none() && session.req_header().method == http::Method::POST
}

/// Whether a request must go through a subrequest: its body does not fit the retry
/// buffer, or it has list answers to filter.
pub fn needed(body_len: usize, lists_pending: bool) -> bool {
    lists_pending || body_len > RETRY_BUFFER_LIMIT
}

/// In a subrequest: takes the main request's decisions into `ctx`. Returns false in a
/// main request.
pub fn adopt_handoff(session: &mut Session, ctx: &mut RequestCtx) -> bool {
    let Some(sub) = session.subrequest_ctx.as_mut() else {
        return false;
    };
    let handoff = sub
        .user_ctx_mut()
        .and_then(|u| u.downcast_mut::<Option<Handoff>>())
        .and_then(Option::take);
    if let Some(h) = handoff {
        ctx.state = h.state;
        ctx.route = Some(h.route);
        ctx.upstream_credential = h.upstream_credential;
        ctx.upstream_session_id = h.upstream_session_id;
        ctx.reusable_seal = h.reusable_seal;
        ctx.pending_lists = h.pending_lists;
        ctx.principal = h.principal;
        ctx.permit = Some(h.permit);
        ctx.inspected = Some(h.inspected);
        ctx.body_len = Some(h.body_len);
        ctx.list_failure = Some(h.list_failure);
        ctx.ids = h.ids;
    }
    true
}

/// Hands the admitted request to a subrequest (a body over the retry buffer, or list
/// answers to filter: JSON ones are then held whole). `Err`: nothing reached the client,
/// which gets the refusal.
pub async fn hand_off(
    session: &mut Session,
    ctx: &mut RequestCtx,
    body: Bytes,
) -> std::result::Result<(), Refusal> {
    let (Some(route), Some(permit), Some(inspected), Some(body_len)) = (
        ctx.route.clone(),
        ctx.permit.clone(),
        ctx.inspected.clone(),
        ctx.body_len,
    ) else {
        return Err(Refusal::Internal);
    };
    // On a route with a policy every JSON answer is filtered whole and may change length
    // (see `rewrite::mode_for`): hold it, so it goes out with its final length.
    let hold_json = route.route.policy.is_some();
    let handoff = Handoff {
        state: ctx.state.clone(),
        route,
        pending_lists: ctx.pending_lists.clone(),
        upstream_session_id: ctx.upstream_session_id.clone(),
        reusable_seal: ctx.reusable_seal.clone(),
        upstream_credential: ctx.upstream_credential.clone(),
        principal: ctx.principal.clone(),
        permit,
        inspected,
        body_len,
        ids: ctx.ids.clone(),
        list_failure: Default::default(),
    };
    ctx.delegated = true;
    match forward(session, handoff, body, hold_json).await {
        Err(e) if session.response_written().is_none() => {
            tracing::warn!(error = %e, "subrequest failed");
            ctx.delegated = false;
            Err(match classify(&e) {
                Failure::Respond { refusal, .. } => refusal,
                _ => Refusal::Internal,
            })
        }
        // Once the answer has begun, the subrequest's own logging recorded the failure.
        _ => Ok(()),
    }
}

/// Runs the request as a subrequest fed with `body`, piping its response to the client.
/// With `hold_json`, a JSON answer (a list answer, filtered by the subrequest) is held
/// whole and sent with its final length, as a 502 if it could not be filtered.
pub async fn forward(
    session: &mut Session,
    handoff: Handoff,
    body: Bytes,
    hold_json: bool,
) -> Result<()> {
    if session.req_header().version == http::Version::HTTP_2 {
        as_http11_request(session.req_header_mut(), body.len())?;
    }
    let Some(spawner) = session.subrequest_spawner.as_ref() else {
        return Error::e_explain(ErrorType::InternalError, "no subrequest spawner");
    };
    let list_failure = handoff.list_failure.clone();
    let sub_ctx = SubCtx::builder()
        .body_mode(BodyMode::ExpectBody)
        .user_ctx(Box::new(Some(handoff)))
        .build();
    let (prepared, handle) = spawner.create_subrequest(session.as_downstream(), sub_ctx);
    let mut held = Held::new(hold_json);
    let piped = pipe_subrequest(
        session,
        prepared,
        handle,
        |task| held.take(task),
        InputBodyType::Preset(InputBody::Bytes(vec![body])),
    )
    .await;
    match piped {
        Ok(mut state) => {
            let joined = match state.join_handle.take() {
                Some(join) => join.await.is_ok(),
                None => true,
            };
            match settle(joined, list_failure.load(Ordering::Acquire)) {
                Settled::AsWritten => {
                    if let Some(tasks) = held.release(None) {
                        session.write_response_tasks(tasks).await?;
                    }
                    Ok(())
                }
                Settled::WithStatusOf(refusal) => {
                    if let Some(tasks) = held.release(Some(&refusal)) {
                        session.write_response_tasks(tasks).await?;
                    }
                    Ok(())
                }
                Settled::Refuse(_) => {
                    // The held answer (if any) is dropped unsent: the caller answers with
                    // the refusal when nothing has reached the client yet.
                    tracing::warn!("subrequest task failed; its answer is not released");
                    Error::e_explain(UNFILTERABLE, "subrequest task failed")
                }
            }
        }
        Err(mut failed) => {
            if let Some(join) = failed.state.join_handle.take() {
                join.abort();
            }
            Err(failed.error)
        }
    }
}

/// An HTTP/2 request's header in the HTTP/1.1 form the subrequest parses: Pingora renders
/// the main request's header as HTTP/1 text, and a request line saying `HTTP/2` does not
/// parse (400). `Host` comes from `:authority`, and the held body's length is declared
/// (an HTTP/2 request need not send `Content-Length`; without it the subrequest would
/// read no body).
fn as_http11_request(req: &mut pingora::http::RequestHeader, body_len: usize) -> Result<()> {
    req.set_version(http::Version::HTTP_11);
    if !req.headers.contains_key(http::header::HOST) {
        let authority = req.uri.authority().map(|a| a.as_str().to_string()).or_err(
            ErrorType::InvalidHTTPHeader,
            "an HTTP/2 request without :authority",
        )?;
        req.insert_header(http::header::HOST, authority)?;
    }
    req.insert_header(http::header::CONTENT_LENGTH, body_len)?;
    Ok(())
}

/// How a subrequest's answer ends once the subrequest is over.
#[derive(Debug, PartialEq, Eq)]
enum Settled {
    /// Sent as the subrequest wrote it.
    AsWritten,
    /// Sent with this refusal's status: the list filter failed, and the held body is
    /// already the refusal's (see `rewrite`).
    WithStatusOf(Refusal),
    /// Not sent at all: the subrequest task itself failed (panicked or was cancelled), so
    /// whatever it produced may be unfiltered. The client gets this refusal instead.
    Refuse(Refusal),
}

/// Decides how the answer ends from whether the subrequest task `joined` cleanly and
/// whether its list filter `list_failed`. A failed join never releases an answer.
fn settle(joined: bool, list_failed: bool) -> Settled {
    if !joined {
        Settled::Refuse(Refusal::UnfilterableAnswer)
    } else if list_failed {
        Settled::WithStatusOf(Refusal::UnfilterableAnswer)
    } else {
        Settled::AsWritten
    }
}

/// The tasks of a JSON answer, kept back from the client until the answer is complete.
struct Held {
    /// Whether a JSON answer is to be held at all.
    hold_json: bool,
    holding: bool,
    tasks: Vec<HttpTask>,
}

impl Held {
    fn new(hold_json: bool) -> Held {
        Held {
            hold_json,
            holding: false,
            tasks: Vec::new(),
        }
    }

    /// Passes a task on, or keeps it: from a JSON response header with a body to come
    /// until the end. A failure while holding fails the request (nothing was sent yet).
    fn take(&mut self, task: HttpTask) -> Result<Option<HttpTask>> {
        if self.holding {
            if let HttpTask::Failed(e) = task {
                return Err(e);
            }
            self.tasks.push(task);
            return Ok(None);
        }
        match task {
            // Every answer but an event stream is filtered whole: held, whatever its type.
            HttpTask::Header(header, false)
                if self.hold_json && !super::headers::is_event_stream(&header) =>
            {
                self.holding = true;
                self.tasks.push(HttpTask::Header(header, false));
                Ok(None)
            }
            other => Ok(Some(other)),
        }
    }

    /// The held answer, ready to send: its length set, and its status the `refusal`'s when
    /// the list filter failed. `None` when nothing was held.
    fn release(self, refusal: Option<&Refusal>) -> Option<Vec<HttpTask>> {
        if !self.holding {
            return None;
        }
        let mut tasks = self.tasks;
        let len: usize = tasks
            .iter()
            .map(|t| match t {
                HttpTask::Body(Some(b), _) => b.len(),
                _ => 0,
            })
            .sum();
        if let Some(HttpTask::Header(header, _)) = tasks.first_mut() {
            if let Some(refusal) = refusal {
                let _ = header.set_status(refusal.status());
            }
            header.remove_header(&http::header::TRANSFER_ENCODING);
            let _ = header.insert_header(http::header::CONTENT_LENGTH, len.to_string());
        }
        Some(tasks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora::http::ResponseHeader;

    fn header(content_type: &str) -> HttpTask {
        let mut h = ResponseHeader::build(200, None).unwrap();
        h.insert_header("content-type", content_type).unwrap();
        h.insert_header("transfer-encoding", "chunked").unwrap();
        HttpTask::Header(Box::new(h), false)
    }

    fn body(text: &'static str, end: bool) -> HttpTask {
        HttpTask::Body(Some(Bytes::from_static(text.as_bytes())), end)
    }

    #[test]
    fn an_http2_header_becomes_http11_text_with_host_and_length() {
        let parts = http::Request::post("https://gw.example:8443/mcp?x=1")
            .version(http::Version::HTTP_2)
            .header("content-type", "application/json")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let mut req = pingora::http::RequestHeader::from(parts);
        as_http11_request(&mut req, 70_000).unwrap();
        let text = String::from_utf8(
            pingora::protocols::http::v1::client::http_req_header_to_wire(&req)
                .unwrap()
                .to_vec(),
        )
        .unwrap();
        assert!(text.starts_with("POST /mcp?x=1 HTTP/1.1\r\n"), "{text}");
        let lower = text.to_ascii_lowercase();
        assert!(lower.contains("\r\nhost: gw.example:8443\r\n"), "{text}");
        assert!(lower.contains("\r\ncontent-length: 70000\r\n"), "{text}");
    }

    fn status_and_length(tasks: &[HttpTask]) -> (u16, String) {
        match &tasks[0] {
            HttpTask::Header(h, _) => (
                h.status.as_u16(),
                h.headers["content-length"].to_str().unwrap().to_string(),
            ),
            _ => panic!("the header comes first"),
        }
    }

    #[test]
    fn a_json_answer_is_held_until_released_with_its_length() {
        let mut held = Held::new(true);
        assert!(held.take(header("application/json")).unwrap().is_none());
        assert!(held.take(body("{\"a\":", false)).unwrap().is_none());
        assert!(held.take(body("1}", true)).unwrap().is_none());
        let tasks = held.release(None).unwrap();
        assert_eq!(tasks.len(), 3);
        assert_eq!(status_and_length(&tasks), (200, "7".to_string()));
        match &tasks[0] {
            HttpTask::Header(h, _) => assert!(h.headers.get("transfer-encoding").is_none()),
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_failed_filter_turns_the_held_answer_into_a_502() {
        let mut held = Held::new(true);
        held.take(header("application/json")).unwrap();
        held.take(body("{\"error\":{}}", true)).unwrap();
        assert_eq!(
            status_and_length(&held.release(Some(&Refusal::UnfilterableAnswer)).unwrap()).0,
            502
        );
    }

    #[test]
    fn a_failed_subrequest_task_never_releases_its_answer() {
        for list_failed in [false, true] {
            assert_eq!(
                settle(false, list_failed),
                Settled::Refuse(Refusal::UnfilterableAnswer),
                "{list_failed}"
            );
        }
        assert_eq!(
            settle(true, true),
            Settled::WithStatusOf(Refusal::UnfilterableAnswer)
        );
        assert_eq!(settle(true, false), Settled::AsWritten);
        // What the caller makes of the refusal: a 502 through `Refusal`.
        let e = Error::explain(UNFILTERABLE, "subrequest task failed");
        match super::super::failure::classify(&e) {
            super::super::failure::Failure::Respond { refusal, .. } => {
                assert_eq!(refusal, Refusal::UnfilterableAnswer);
                assert_eq!(refusal.status(), 502);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn event_streams_and_unheld_answers_pass_at_once() {
        let mut held = Held::new(true);
        assert!(held.take(header("text/event-stream")).unwrap().is_some());
        assert!(held.take(body("data: 1\n\n", false)).unwrap().is_some());
        assert!(held.release(None).is_none());
        let mut held = Held::new(false);
        assert!(held.take(header("application/json")).unwrap().is_some());
        assert!(held.release(Some(&Refusal::UnfilterableAnswer)).is_none());
        for other in ["text/plain", "application/json-rpc", ""] {
            let mut held = Held::new(true);
            assert!(held.take(header(other)).unwrap().is_none(), "{other}");
        }
    }

    #[test]
    fn an_upstream_failure_while_holding_fails_the_request() {
        let mut held = Held::new(true);
        held.take(header("application/json")).unwrap();
        let failed = HttpTask::Failed(Error::new(ErrorType::ReadError));
        assert!(held.take(failed).is_err());
    }
}

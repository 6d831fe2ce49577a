//! Server-minted handles bound to the caller: the `requestState` of MCP 2026-07-28
//! multi round-trip requests. A server that needs input answers `tools/call`,
//! `prompts/get` or `resources/read` with an input-required result carrying
//! `result.requestState`; the client retries the request with that string as
//! `params.requestState`. The string is the server's memory, held by the client: the
//! specification says it is attacker-controlled on the way back and must not act as
//! authentication ("state handle hijacking").
//!
//! So the gateway never hands the upstream's state to the client. It seals it — the same
//! AEAD, keys and bindings as session ids (route + issuer, subject, client), under its
//! own [`Purpose`] so that a sealed session id is never a sealed state and the other way
//! round — and restores the upstream's original bytes only when the caller it was sealed
//! for presents it on the same route. Anything else (another caller or route, another or
//! unknown key, tampered, malformed, too old) is refused before the upstream is
//! contacted.
//!
//! Owns the purpose, where a request may carry a state, sealing and opening, and
//! restoring the original state in a request body. The proxy step that calls it is
//! `proxy::handles`; the response side is a hook of `mcp::filter` ([`SealState`]).
//!
//! # What is sealed
//!
//! The state's JSON string literal *as the upstream wrote it* (between the quotes,
//! escapes kept), so that the upstream receives exactly the bytes it minted. The sealed
//! form is `rs1.<key id>.<base64url>`: ASCII letters, digits, `.`, `_`, `-`, which
//! need no escaping in JSON.
//!
//! # Restoring the body
//!
//! The restored literal is always shorter than the sealed one it replaces, and the body
//! keeps its length: JSON white space follows the restored string. Pingora's subrequest
//! re-reads the client's request header, so its body framing (`Content-Length`) stays
//! true; the upstream gets a body that every JSON parser reads as the request the client
//! sent with the original state in place of the sealed one. The restored body is
//! inspected again and must say the same thing.

use std::time::Duration;

use super::jsonrpc::{inspect, Inspected, Message, MessageKind, RELATED_TASK_META_KEY};
use super::methods::revision_since;
use super::scan::{NotJson, Scanner};
use super::session::{
    open_payload, seal_payload, Digests, Purpose, SealError, SessionKeys, UnsealError,
};

/// The kinds of server-minted handle the gateway binds to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handle {
    /// `params.requestState` of a multi round-trip request.
    RequestState,
    /// A task id of the tasks extension (`taskId` in results, `params`, and the
    /// related-task `_meta`).
    TaskId,
}

impl Handle {
    /// The `handle` label of `drawbridge_handle_rejections_total` and the audit event.
    pub fn label(self) -> &'static str {
        match self {
            Handle::RequestState => "request_state",
            Handle::TaskId => "task_id",
        }
    }

    /// What its sealed form is (a distinct version, so that no handle, and no session
    /// id, is ever accepted as another).
    pub fn purpose(self) -> &'static Purpose {
        match self {
            Handle::RequestState => &REQUEST_STATE,
            Handle::TaskId => &TASK_ID,
        }
    }
}

/// Longest upstream `requestState` literal the gateway seals (bytes as written).
pub const MAX_STATE_LEN: usize = 1 << 20;

/// Sealed `requestState` values.
pub const REQUEST_STATE: Purpose = Purpose {
    version: "rs1",
    max_payload: MAX_STATE_LEN,
    // prefix (version, key id, two dots) + base64 of nonce, header, payload and tag.
    max_sealed: 3 + 1 + 16 + 1 + (12 + 8 + 64 + MAX_STATE_LEN + 16).div_ceil(3) * 4,
};

/// Longest upstream task id literal the gateway seals (bytes as written). Task ids are
/// short names; a longer one makes the answer unfilterable.
pub const MAX_TASK_ID_LEN: usize = 4096;

/// Sealed task ids.
pub const TASK_ID: Purpose = Purpose {
    version: "tk1",
    max_payload: MAX_TASK_ID_LEN,
    max_sealed: 3 + 1 + 16 + 1 + (12 + 8 + 64 + MAX_TASK_ID_LEN + 16).div_ceil(3) * 4,
};

/// The methods whose answer may be an input-required result (MCP 2026-07-28): a JSON
/// answer to a POST carrying one of them is read for a `requestState` on every route.
pub const INPUT_REQUIRED_METHODS: [&str; 3] = ["tools/call", "prompts/get", "resources/read"];

/// The response-side hook: the sealed form of an upstream `requestState` literal (as
/// written, between the quotes), or `None` when it cannot be sealed (the answer then
/// fails closed).
pub type SealState<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Seals the upstream's `requestState` literal (as written, between its quotes) for
/// `bound`.
pub fn seal_request_state(
    keys: &SessionKeys,
    literal: &str,
    bound: Digests,
    now_unix: u64,
) -> Result<String, SealError> {
    seal_handle(keys, Handle::RequestState, literal, bound, now_unix)
}

/// Opens a sealed `requestState` presented by a client: the upstream's literal, if it was
/// sealed for exactly `bound` (and is younger than `max_age`).
pub fn open_request_state(
    keys: &SessionKeys,
    sealed: &str,
    bound: Digests,
    now_unix: u64,
    max_age: Option<Duration>,
) -> Result<String, UnsealError> {
    open_handle(keys, Handle::RequestState, sealed, bound, now_unix, max_age)
}

/// Seals an upstream handle's literal (as written, between its quotes) for `bound`,
/// under the handle's own purpose.
pub fn seal_handle(
    keys: &SessionKeys,
    handle: Handle,
    literal: &str,
    bound: Digests,
    now_unix: u64,
) -> Result<String, SealError> {
    seal_payload(keys, handle.purpose(), literal.as_bytes(), bound, now_unix)
}

/// Opens a sealed handle presented by a client: the upstream's literal, if it was sealed
/// as this kind of handle for exactly `bound` (and is younger than `max_age`).
pub fn open_handle(
    keys: &SessionKeys,
    handle: Handle,
    sealed: &str,
    bound: Digests,
    now_unix: u64,
    max_age: Option<Duration>,
) -> Result<String, UnsealError> {
    let opened = open_payload(keys, handle.purpose(), sealed, bound, now_unix, max_age)?;
    String::from_utf8(opened.payload).map_err(|_| UnsealError::Malformed)
}

/// Whether the request's `MCP-Protocol-Version` names a revision that has multi
/// round-trip requests (2026-07-28 or later; dates compare as text). Answers to older
/// clients are not read for a state on routes without a policy: a state that reaches
/// the client unsealed is refused when it comes back, so it cannot be replayed.
pub fn version_has_request_state(version: Option<&[u8]>) -> bool {
    revision_since(version, b"2026-07-28")
}

/// Whether an answer (a JSON body on a route without a policy) may be an input-required
/// result: the POST carried a method that may answer with one.
pub fn answer_may_carry_state(inspected: Option<&Inspected>) -> bool {
    inspected.is_some_and(|i| {
        i.messages.iter().any(|m| match &m.kind {
            MessageKind::Call { method, .. } => INPUT_REQUIRED_METHODS.contains(&method.as_str()),
            MessageKind::Response => false,
        })
    })
}

/// The first revision with tasks (2025-11-25).
const TASKS_SINCE: &[u8] = b"2025-11-25";

/// Whether a JSON answer (on a route without a policy) is read for a server-minted
/// handle: a `requestState` (2026-07-28 or later, a method that may answer
/// input-required), or a task id (2025-11-25 or later, a `tasks/*` method or one that
/// may create a task: `tools/call`, `prompts/get`, `resources/read`).
pub fn answer_may_carry_handle(version: Option<&[u8]>, inspected: Option<&Inspected>) -> bool {
    let state = version_has_request_state(version) && answer_may_carry_state(inspected);
    let tasks = revision_since(version, TASKS_SINCE)
        && inspected.is_some_and(|i| {
            i.messages.iter().any(|m| match &m.kind {
                MessageKind::Call { method, .. } => {
                    method.starts_with("tasks/")
                        || INPUT_REQUIRED_METHODS.contains(&method.as_str())
                }
                MessageKind::Response => false,
            })
        });
    state || tasks
}

/// Whether an event's data may hold a `requestState` member at all: its name, or an
/// escape that could spell it. Lets a route without a policy skip reading the rest.
pub fn may_carry_state(data: &str) -> bool {
    memchr::memchr(b'\\', data.as_bytes()).is_some()
        || memchr::memmem::find(data.as_bytes(), b"requestState").is_some()
}

/// Whether an event's data may hold a task id: the member name, or an escape that could
/// spell it. Lets a route without a policy skip reading the rest.
pub fn may_carry_task_id(data: &str) -> bool {
    memchr::memchr(b'\\', data.as_bytes()).is_some()
        || memchr::memmem::find(data.as_bytes(), b"taskId").is_some()
}

/// The `requestState` a request body presents, if any. Only a single request (a message
/// with a method and an id, not in a batch) may carry one: it is the retry of a request
/// whose answer the client got. In a batch (which MCP 2026-07-28 does not have), a
/// notification or a response it is refused (the text says why).
pub fn presented_state(inspected: &Inspected) -> Result<Option<&str>, &'static str> {
    let carrying = inspected
        .messages
        .iter()
        .filter(|m| m.request_state.is_some())
        .count();
    if carrying == 0 {
        return Ok(None);
    }
    if inspected.batch {
        return Err("a requestState in a batch");
    }
    match inspected.messages.first() {
        Some(Message {
            id: Some(_),
            kind: MessageKind::Call { .. },
            request_state: Some(state),
            ..
        }) => Ok(Some(state)),
        _ => Err("a requestState on a message that is not a request"),
    }
}

/// Where a request presents a server-minted handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// `params.requestState`.
    RequestState,
    /// `params.taskId` (`tasks/get`, `tasks/result`, `tasks/cancel`, `tasks/update`, or
    /// any other message that names one there).
    TaskId,
    /// `params._meta["io.modelcontextprotocol/related-task"].taskId`.
    RelatedTask,
}

impl Place {
    /// The kind of handle found there (its purpose and label).
    pub fn handle(self) -> Handle {
        match self {
            Place::RequestState => Handle::RequestState,
            Place::TaskId | Place::RelatedTask => Handle::TaskId,
        }
    }
}

/// Every server-minted handle a request body presents, where and as sent. A
/// `requestState` only on a single request (see [`presented_state`]); a task id only on
/// a single message with a method (a request or a notification: a client may tell the
/// server about its task), never in a batch (which MCP 2025-11-25, the first revision
/// with tasks, does not have).
pub fn presented_handles(inspected: &Inspected) -> Result<Vec<(Place, &str)>, &'static str> {
    let state = presented_state(inspected)?;
    let carrying = inspected
        .messages
        .iter()
        .filter(|m| m.task_id.is_some() || m.related_task.is_some())
        .count();
    let mut found: Vec<(Place, &str)> = state
        .map(|s| (Place::RequestState, s))
        .into_iter()
        .collect();
    if carrying == 0 {
        return Ok(found);
    }
    if inspected.batch {
        return Err("a task id in a batch");
    }
    let Some(message) = inspected.messages.first() else {
        return Err("a task id on a message that is not a request");
    };
    if !matches!(message.kind, MessageKind::Call { .. }) {
        return Err("a task id on a message that is not a request");
    }
    found.extend(message.task_id.as_deref().map(|t| (Place::TaskId, t)));
    found.extend(
        message
            .related_task
            .as_deref()
            .map(|t| (Place::RelatedTask, t)),
    );
    Ok(found)
}

/// Why a body could not be restored. Never expected for a body that passed inspection
/// (the caller answers 500 and logs it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoreError(pub &'static str);

/// The body the upstream receives: `body` (one request, inspected as `inspected`, whose
/// `params.requestState` is the sealed value) with the original `literal` in place of
/// the sealed string, followed by white space so that the length stays the same. The
/// result is inspected again and must read as the same request with the original state.
pub fn restore_request_state(
    body: &[u8],
    inspected: &Inspected,
    literal: &str,
) -> Result<Vec<u8>, RestoreError> {
    restore_handles(
        body,
        inspected,
        &[(Place::RequestState, literal.to_string())],
    )
    .map(|(out, _)| out)
}

/// The body the upstream receives: `body` (one message, inspected as `inspected`) with
/// each opened handle's original literal (as the upstream wrote it, between the quotes)
/// in place of the sealed string at its place, each followed by white space so that the
/// body keeps its length. `opened` must name every handle the body presents (see
/// [`presented_handles`]). The result is inspected again and must read as the same
/// message with the original handles; that reading is returned with it (the upstream's
/// view: its `Mcp-Name` mirrors the original task id).
pub fn restore_handles(
    body: &[u8],
    inspected: &Inspected,
    opened: &[(Place, String)],
) -> Result<(Vec<u8>, Inspected), RestoreError> {
    let text = std::str::from_utf8(body).map_err(|_| RestoreError("not UTF-8"))?;
    let presented = presented_handles(inspected).map_err(RestoreError)?;
    if presented.is_empty() || presented.len() != opened.len() {
        return Err(RestoreError(
            "the handles to restore are not the ones presented",
        ));
    }
    let spans = handle_spans(text).map_err(|_| RestoreError("not JSON"))?;
    let mut edits: Vec<(std::ops::Range<usize>, &str)> = Vec::with_capacity(opened.len());
    for (place, literal) in opened {
        let sealed = presented
            .iter()
            .find(|(p, _)| p == place)
            .map(|(_, sealed)| *sealed)
            .ok_or(RestoreError("a handle that the request does not present"))?;
        let mut at = spans.iter().filter(|(p, _, _)| p == place);
        let (Some((_, span, value)), None) = (at.next(), at.next()) else {
            return Err(RestoreError("not exactly one handle at its place"));
        };
        if value != sealed {
            return Err(RestoreError("the body and its inspection disagree"));
        }
        if literal.len() + 2 > span.len() {
            return Err(RestoreError(
                "the original handle is longer than the sealed one",
            ));
        }
        edits.push((span.clone(), literal));
    }
    edits.sort_by_key(|(span, _)| span.start);
    let mut out = Vec::with_capacity(body.len());
    let mut at = 0;
    for (span, literal) in &edits {
        out.extend_from_slice(&body[at..span.start]);
        out.push(b'"');
        out.extend_from_slice(literal.as_bytes());
        out.push(b'"');
        out.resize(out.len() + span.len() - literal.len() - 2, b' ');
        at = span.end;
    }
    out.extend_from_slice(&body[at..]);

    // The restored body must read as the same message, now with the original handles.
    let decoded = |place: Place| -> Result<Option<String>, RestoreError> {
        match opened.iter().find(|(p, _)| *p == place) {
            None => Ok(None),
            Some((_, literal)) => serde_json::from_str::<String>(&format!("\"{literal}\""))
                .map(Some)
                .map_err(|_| RestoreError("a sealed handle is not a JSON string")),
        }
    };
    let state = decoded(Place::RequestState)?;
    let task_id = decoded(Place::TaskId)?;
    let related = decoded(Place::RelatedTask)?;
    let again = inspect(&out).map_err(|_| RestoreError("the restored body is not accepted"))?;
    let same = match (&again.messages[..], &inspected.messages[..]) {
        ([now], [before]) => {
            !again.batch
                && now.id == before.id
                && now.kind == before.kind
                && now.version_claim == before.version_claim
                && now.request_state.as_deref() == state.as_deref()
                && now.task_id == task_id
                && now.related_task == related
        }
        _ => false,
    };
    if !same {
        return Err(RestoreError("the restored body reads differently"));
    }
    Ok((out, again))
}

/// Every handle string of a single-object body: where it is, its span (with the
/// quotes) and decoded value. Places: `params.requestState`, `params.taskId`,
/// `params._meta[related-task].taskId`.
fn handle_spans(text: &str) -> Result<Vec<(Place, std::ops::Range<usize>, String)>, NotJson> {
    let mut s = Scanner::new(text);
    let mut found = Vec::new();
    if s.peek() != Some(b'{') {
        s.value()?;
        return Ok(found);
    }
    let string_at = |s: &mut Scanner<'_>, place: Place, found: &mut Vec<_>| {
        let start = s.pos();
        let value = s.string()?.decode().ok_or(NotJson)?.into_owned();
        found.push((place, start..s.pos(), value));
        Ok::<_, NotJson>(())
    };
    s.object(|s, key| {
        if !key.is("params") || s.peek() != Some(b'{') {
            s.value()?;
            return Ok(());
        }
        s.object(|s, key| {
            if key.is("requestState") && s.peek() == Some(b'"') {
                return string_at(s, Place::RequestState, &mut found);
            }
            if key.is("taskId") && s.peek() == Some(b'"') {
                return string_at(s, Place::TaskId, &mut found);
            }
            if key.is("_meta") && s.peek() == Some(b'{') {
                s.object(|s, key| {
                    if !key.is(RELATED_TASK_META_KEY) || s.peek() != Some(b'{') {
                        s.value()?;
                        return Ok(());
                    }
                    s.object(|s, key| {
                        if key.is("taskId") && s.peek() == Some(b'"') {
                            return string_at(s, Place::RelatedTask, &mut found);
                        }
                        s.value()?;
                        Ok::<_, NotJson>(())
                    })?;
                    Ok::<_, NotJson>(())
                })?;
                return Ok(());
            }
            s.value()?;
            Ok::<_, NotJson>(())
        })?;
        Ok::<_, NotJson>(())
    })?;
    Ok(found)
}

#[cfg(test)]
mod task_tests;
#[cfg(test)]
mod tests;

//! The legacy HTTP+SSE transport (MCP 2024-11-05): the upstream's GET stream announces,
//! in an `endpoint` event, the URL the client must POST to. Behind a route whose prefix
//! differs from the upstream path, that URL must be rewritten into the route's public
//! path space, or the client would POST somewhere the gateway does not route.
//!
//! The transport sends `endpoint` as the stream's first event, so only the first event
//! that has any field is examined; after it (or after 64 KiB without a whole event) the
//! stream passes through untouched and without buffering. A Streamable HTTP GET stream
//! therefore costs one event's worth of scanning.

use crate::config::{public_path_for, Route};
use crate::target::query::{base_name, Query};

use super::sse::{event_type_and_data, fields, with_data, EventSplitter};

/// Give up looking for the endpoint event after this many buffered bytes.
const MAX_SCAN: usize = 64 * 1024;

/// Rewrites the `endpoint` event of one legacy SSE stream.
#[derive(Debug, Default)]
pub struct EndpointRewriter {
    splitter: EventSplitter,
    done: bool,
}

impl EndpointRewriter {
    /// Transforms one chunk of the stream; `end` flushes whatever is buffered.
    /// `seal` turns the upstream's session id (the `sessionId` / `session_id` query
    /// parameter of the announced endpoint) into the id the client may see.
    pub fn rewrite(
        &mut self,
        route: &Route,
        seal: &dyn Fn(&str) -> Option<String>,
        chunk: &[u8],
        end: bool,
    ) -> Vec<u8> {
        if self.done {
            return chunk.to_vec();
        }
        let mut out = Vec::with_capacity(chunk.len() + 32);
        for event in self.splitter.push(chunk) {
            if self.done || fields(&event).is_empty() {
                out.extend_from_slice(&event);
                continue;
            }
            self.done = true;
            let (kind, data) = event_type_and_data(&event);
            if kind != "endpoint" {
                out.extend_from_slice(&event);
                continue;
            }
            let public =
                public_endpoint(route, data.trim()).and_then(|e| map_session_param(&e, seal));
            match public {
                Some(public) => out.extend_from_slice(&with_data(&event, &public)),
                None => {
                    tracing::warn!(
                        route = %route.name,
                        "upstream announced an endpoint outside its base path; forwarded unchanged"
                    );
                    out.extend_from_slice(&event);
                }
            }
        }
        if self.splitter.buffered() > MAX_SCAN {
            self.done = true;
        }
        if self.done || end {
            out.extend_from_slice(&self.splitter.take_rest());
        }
        out
    }
}

/// Query parameters that carry the legacy transport's session id (TypeScript and Python
/// SDKs respectively), in the only spelling the gateway accepts.
pub const SESSION_PARAMS: [&str; 2] = ["sessionId", "session_id"];

/// Why a query's session parameter is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionParamError {
    /// More than one parameter a framework could read as the session id: frameworks
    /// disagree about which one counts (Starlette the last, `qs` makes an array).
    Repeated,
    /// A session parameter spelled other than exactly `sessionId` or `session_id`
    /// (encoded, another case, `sessionId[]`): the gateway would not check it, and a
    /// framework that decodes or folds names would read it.
    Spelling,
    /// The query cannot be read at all.
    Unreadable,
}

impl SessionParamError {
    pub fn message(self) -> &'static str {
        match self {
            SessionParamError::Repeated => "the query has more than one session parameter",
            SessionParamError::Spelling => {
                "the session parameter must be spelled exactly sessionId or session_id"
            }
            SessionParamError::Unreadable => "the query string cannot be read",
        }
    }
}

/// True when a framework could read `name` as the session parameter: its base name
/// (see [`base_name`]) is `sessionid` or `session_id` in any case.
pub fn is_session_name(name: &str) -> bool {
    let base = base_name(name);
    SESSION_PARAMS.iter().any(|p| p.eq_ignore_ascii_case(&base))
}

/// The session id a query carries: `None` without a session parameter, the value of the
/// one plainly spelled session parameter, or a refusal (see [`SessionParamError`]).
pub fn session_param_of(query: &Query) -> Result<Option<&str>, SessionParamError> {
    let mut found = None;
    for p in query.params.iter().filter(|p| is_session_name(&p.name)) {
        if found.is_some() {
            return Err(SessionParamError::Repeated);
        }
        found = Some(p);
    }
    let Some(p) = found else {
        return Ok(None);
    };
    if p.name_encoded || !SESSION_PARAMS.contains(&p.name.as_str()) {
        return Err(SessionParamError::Spelling);
    }
    Ok(Some(p.value.as_deref().unwrap_or("")))
}

/// Replaces the value of every parameter a framework could read as the session id
/// ([`is_session_name`]) in `path_and_query` with `map(value)`; the query comes back in
/// the canonical form (`Query::canonical`). Unchanged when there is no such parameter;
/// `None` when `map` refuses a value or the query cannot be read.
///
/// A request's query was checked to hold at most one, plainly spelled, before it gets
/// here; an endpoint the upstream announces may hold several, and none of them may
/// reach the client unmapped.
pub fn map_session_param(
    path_and_query: &str,
    map: &dyn Fn(&str) -> Option<String>,
) -> Option<String> {
    let Some((path, query)) = path_and_query.split_once('?') else {
        return Some(path_and_query.to_string());
    };
    let mut query = Query::parse(query).ok()?;
    if !query.params.iter().any(|p| is_session_name(&p.name)) {
        return Some(path_and_query.to_string());
    }
    for p in query.params.iter_mut().filter(|p| is_session_name(&p.name)) {
        p.value = Some(map(p.value.as_deref().unwrap_or(""))?);
    }
    Some(format!("{path}?{}", query.canonical()))
}

/// The session id a legacy request carries in its query, if any.
pub fn session_param(query: &str) -> Result<Option<String>, SessionParamError> {
    let query = Query::parse(query).map_err(|_| SessionParamError::Unreadable)?;
    Ok(session_param_of(&query)?.map(str::to_string))
}

/// The announced endpoint as a path under the route, or `None` if it cannot be mapped.
/// Relative references (`messages?x`) resolve against the rewritten stream URL on the
/// client side and need no change.
fn public_endpoint(route: &Route, announced: &str) -> Option<String> {
    if let Ok(url) = url::Url::parse(announced) {
        let upstream = &route.upstream.url;
        let same_origin = url.scheme() == upstream.scheme()
            && url.host_str() == upstream.host_str()
            && url.port_or_known_default() == upstream.port_or_known_default();
        if !same_origin {
            return None;
        }
        let path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        return public_path_for(route, &path);
    }
    if announced.starts_with('/') {
        return public_path_for(route, announced);
    }
    Some(announced.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load_str, Router};

    fn route() -> std::sync::Arc<Route> {
        let text = "listen: 127.0.0.1:1\nadmin: { listen: 127.0.0.1:2 }\nroutes:\n  - { name: legacy, match: { path: /legacy }, upstream: { url: 'http://127.0.0.1:3001/' } }\n";
        let config = load_str("t", text).unwrap().config;
        Router::new(&config.routes)
            .find(None, "/legacy")
            .unwrap()
            .route
    }

    #[test]
    fn rewrites_the_endpoint_split_across_chunks() {
        let route = route();
        let mut r = EndpointRewriter::default();
        let seal = |id: &str| Some(format!("sealed-{id}"));
        let mut out = r.rewrite(&route, &seal, b": hi\n\nevent: endp", false);
        out.extend(r.rewrite(
            &route,
            &seal,
            b"oint\r\ndata: /messages?sessionId=abc\r\n\r\nevent: message\ndata: {}\n\n",
            false,
        ));
        out.extend(r.rewrite(&route, &seal, b"data: later\n\n", true));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            ": hi\n\nevent: endpoint\ndata: /legacy/messages?sessionId=sealed-abc\n\nevent: message\ndata: {}\n\ndata: later\n\n"
        );
    }

    #[test]
    fn only_the_first_event_is_examined() {
        let route = route();
        let mut r = EndpointRewriter::default();
        let seal = |id: &str| Some(id.to_string());
        let stream = b"data: {}\n\nevent: endpoint\ndata: /messages\n\n";
        assert_eq!(r.rewrite(&route, &seal, stream, false), stream.to_vec());
        // Once done, chunks pass through without waiting for event boundaries.
        assert_eq!(
            r.rewrite(&route, &seal, b"data: partial", false),
            b"data: partial".to_vec()
        );
    }

    #[test]
    fn gives_up_on_a_huge_first_event() {
        let route = route();
        let mut r = EndpointRewriter::default();
        let big = vec![b'x'; MAX_SCAN + 1];
        assert_eq!(
            r.rewrite(&route, &|id: &str| Some(id.to_string()), &big, false),
            big
        );
    }

    #[test]
    fn session_params_are_mapped_and_read() {
        let up = |id: &str| Some(id.to_uppercase());
        assert_eq!(
            map_session_param("/m?x=1&session_id=ab%2Bc&y=2", &up).as_deref(),
            Some("/m?x=1&session_id=AB%2BC&y=2")
        );
        assert_eq!(map_session_param("/m?x=1", &up).as_deref(), Some("/m?x=1"));
        assert_eq!(map_session_param("/m?sessionId=a", &|_: &str| None), None);
        assert_eq!(
            session_param("a=1&sessionId=v1.k.x"),
            Ok(Some("v1.k.x".to_string()))
        );
        assert_eq!(session_param("a=1"), Ok(None));
        // Ambiguous queries are never read; every value a framework could take for the
        // session id is mapped (an announced endpoint passes no raw id on).
        for (query, mapped) in [
            ("sessionId=a&sessionId=b", "sessionId=A&sessionId=B"),
            ("session%5Fid=a;x=1", "session_id=A&x=1"),
            ("sessionId[]=a", "sessionId%5B%5D=A"),
        ] {
            assert_eq!(
                map_session_param(&format!("/m?{query}"), &up),
                Some(format!("/m?{mapped}")),
                "{query}"
            );
            assert!(session_param(query).is_err(), "{query}");
        }
        assert_eq!(map_session_param("/m?sessionId=%zz", &up), None);
        assert_eq!(session_param("a=%zz"), Err(SessionParamError::Unreadable));
    }

    #[test]
    fn absolute_upstream_urls_become_public_paths() {
        let route = route();
        assert_eq!(
            public_endpoint(&route, "http://127.0.0.1:3001/messages?s=1").as_deref(),
            Some("/legacy/messages?s=1")
        );
        assert_eq!(public_endpoint(&route, "http://elsewhere:1/messages"), None);
        assert_eq!(
            public_endpoint(&route, "messages?s=1").as_deref(),
            Some("messages?s=1")
        );
    }
}

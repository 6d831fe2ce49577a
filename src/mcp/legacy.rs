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
/// SDKs respectively).
pub const SESSION_PARAMS: [&str; 2] = ["sessionId", "session_id"];

/// Replaces the value of the session parameter in `path_and_query` with `map(value)`.
/// Unchanged when there is no such parameter; `None` when `map` refuses the value.
pub fn map_session_param(
    path_and_query: &str,
    map: &dyn Fn(&str) -> Option<String>,
) -> Option<String> {
    let Some((path, query)) = path_and_query.split_once('?') else {
        return Some(path_and_query.to_string());
    };
    let mut out = String::with_capacity(path_and_query.len() + 64);
    out.push_str(path);
    out.push('?');
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((name, value)) if SESSION_PARAMS.contains(&name) => {
                let decoded: String = url::form_urlencoded::parse(format!("v={value}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default();
                let mapped = map(&decoded)?;
                out.push_str(name);
                out.push('=');
                out.extend(url::form_urlencoded::byte_serialize(mapped.as_bytes()));
            }
            _ => out.push_str(pair),
        }
    }
    Some(out)
}

/// The session id a legacy POST carries in its query, if any.
pub fn session_param(query: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| SESSION_PARAMS.contains(&name.as_ref()))
        .map(|(_, v)| v.into_owned())
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
            session_param("a=1&sessionId=v1.k.x").as_deref(),
            Some("v1.k.x")
        );
        assert_eq!(session_param("a=1"), None);
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

//! The legacy HTTP+SSE transport (MCP 2024-11-05): the upstream's GET stream announces,
//! in an `endpoint` event, the URL the client must POST to. Behind a route whose prefix
//! differs from the upstream path, that URL must be rewritten into the route's public
//! path space, or the client would POST somewhere the gateway does not route; and the
//! upstream's session id in it must be sealed.
//!
//! [`EndpointRewriter`] maps one `endpoint` event's data; the event stream filter
//! (`mcp::stream`) applies it to every `endpoint` event wherever it comes in a stream.
//! An endpoint that cannot be mapped and sealed ends the stream: the raw upstream id
//! never reaches the client.

use crate::target::query::Query;
pub use crate::target::session_param::SessionParamError;
use crate::target::session_param::{is_session_name, SESSION_PARAMS};

/// What the endpoint rewrite needs to know of a route: where its upstream is, and how
/// its public path prefix maps onto the upstream's base path.
#[derive(Debug, Clone, Copy)]
pub struct RoutePaths<'a> {
    /// The upstream's URL: an absolute endpoint must be on its origin.
    pub upstream: &'a url::Url,
    /// The upstream path the route's prefix maps to.
    pub upstream_base_path: &'a str,
    /// The route's public path prefix (`/` for a root route).
    pub public_prefix: &'a str,
}

/// Maps the `endpoint` event of a legacy SSE stream into the route, sealing its id.
pub struct EndpointRewriter<'a> {
    pub paths: RoutePaths<'a>,
    /// Turns the upstream's session id into the id the client may see.
    pub seal: &'a dyn Fn(&str) -> Option<String>,
}

impl EndpointRewriter<'_> {
    /// The data the client may see, or `None` when the announced endpoint cannot be
    /// mapped and sealed: on another origin (a host spelled differently included),
    /// outside the upstream's base path or with dot segments, with control characters
    /// (on several lines included), or with a session parameter spelled in a way the
    /// gateway would not recognise on the way back, or given twice.
    ///
    /// Control characters, because the client's URL parser (WHATWG) strips them at the
    /// ends and drops tabs and newlines anywhere: `\0\0/messages` is a relative
    /// reference to the gateway, and `/messages` outside the route to the client. A
    /// fragment, because the session parameter is read up to it by the client and
    /// across it by [`map_session_param`]: `?sessionId#=x` had a session parameter for
    /// the one and none for the other.
    pub fn rewrite(&self, data: &str) -> Option<String> {
        let announced = data.trim_matches([' ', '\t']);
        if announced.is_empty() || announced.contains(|c: char| c.is_ascii_control() || c == '#') {
            return None;
        }
        if ambiguous_session_params(announced) || has_dot_segments(announced) {
            return None;
        }
        public_endpoint(self.paths, announced).and_then(|e| map_session_param(&e, self.seal))
    }
}

/// True when the path (of a URL or a reference) has a `.` or `..` segment, raw or
/// percent-encoded: the client would resolve it to a path the gateway did not map.
fn has_dot_segments(endpoint: &str) -> bool {
    let before_query = endpoint.split(['?', '#']).next().unwrap_or_default();
    // `://` after a scheme starts an authority, which ends at the path (a backslash ends
    // it too for http URLs); anywhere else it is part of the path.
    let path = match before_query.split_once("://") {
        Some((scheme, rest)) if is_scheme(scheme) => {
            rest.find(['/', '\\']).map_or("", |at| &rest[at..])
        }
        _ => before_query,
    };
    path.split(['/', '\\']).any(|segment| {
        let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
        decoded == "." || decoded == ".."
    })
}

/// RFC 3986 §3.1: a letter, then letters, digits, `+`, `-` or `.`.
fn is_scheme(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// True when the query holds more than one session parameter, or one whose name the
/// gateway would not match exactly (`session%5Fid`, `SessionId`, …) but an upstream
/// framework might read as one.
fn ambiguous_session_params(endpoint: &str) -> bool {
    let Some((_, query)) = endpoint.split_once('?') else {
        return false;
    };
    let query = query.split('#').next().unwrap_or_default();
    let mut count = 0;
    for pair in query.split(['&', ';']) {
        let raw = pair.split('=').next().unwrap_or_default();
        let decoded: String = url::form_urlencoded::parse(format!("{raw}=").as_bytes())
            .next()
            .map(|(n, _)| n.into_owned())
            .unwrap_or_default();
        let folded: String = decoded
            .chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect();
        if folded == "sessionid" {
            count += 1;
            if !SESSION_PARAMS.contains(&raw) {
                return true;
            }
        }
    }
    count > 1
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

/// The announced endpoint as a path under the route, or `None` if it cannot be mapped.
/// Relative references (`messages?x`) resolve against the rewritten stream URL on the
/// client side and need no change. A path that would start with `//` or `/\` is not
/// one: the client reads it as another host (a route at `/` maps the upstream's
/// `//elsewhere/x` to exactly that).
fn public_endpoint(paths: RoutePaths<'_>, announced: &str) -> Option<String> {
    mapped_endpoint(paths, announced).filter(|e| !e.starts_with("//") && !e.starts_with("/\\"))
}

fn mapped_endpoint(paths: RoutePaths<'_>, announced: &str) -> Option<String> {
    if let Ok(url) = url::Url::parse(announced) {
        let upstream = paths.upstream;
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
        return public_path_for(paths, &path);
    }
    if announced.starts_with("//") || announced.starts_with('\\') {
        return None; // scheme-relative: another host
    }
    if announced.starts_with('/') {
        return public_path_for(paths, announced);
    }
    // A colon before the first `/`, `?` or `#` makes a scheme (RFC 3986 §4.2): not a
    // relative reference, but an absolute URL that did not parse (`http://h:80x/`).
    let first_segment = announced.split(['/', '?', '#']).next().unwrap_or_default();
    if first_segment.contains(':') {
        return None;
    }
    Some(announced.to_string())
}

/// Maps a path the upstream announced (legacy SSE `endpoint` event) back into the route's
/// public path space. `None` when the path is outside the upstream's base path.
pub fn public_path_for(paths: RoutePaths<'_>, upstream_path: &str) -> Option<String> {
    let rest = upstream_path.strip_prefix(paths.upstream_base_path)?;
    if !(rest.is_empty() || rest.starts_with('/') || rest.starts_with('?')) {
        return None;
    }
    let prefix = if paths.public_prefix == "/" {
        ""
    } else {
        paths.public_prefix
    };
    let mut out = format!("{prefix}{rest}");
    if !out.starts_with('/') {
        out.insert(0, '/');
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load_str, Route, Router};
    use crate::target::session_param::session_param_of;

    fn paths(route: &Route) -> RoutePaths<'_> {
        RoutePaths {
            upstream: &route.upstream.url,
            upstream_base_path: &route.upstream.base_path,
            public_prefix: &route.path_prefix,
        }
    }

    fn route() -> std::sync::Arc<Route> {
        let text = "listen: 127.0.0.1:1\nadmin: { listen: 127.0.0.1:2 }\nroutes:\n  - { name: legacy, match: { path: /legacy }, upstream: { url: 'http://127.0.0.1:3001/' } }\n";
        let config = load_str("t", text).unwrap().config;
        Router::new(&config.routes)
            .find(None, "/legacy")
            .unwrap()
            .route
    }

    fn rewrite(route: &Route, data: &str) -> Option<String> {
        let seal = |id: &str| Some(format!("sealed-{id}"));
        EndpointRewriter {
            paths: paths(route),
            seal: &seal,
        }
        .rewrite(data)
    }

    #[test]
    fn endpoints_are_mapped_and_sealed() {
        let route = route();
        assert_eq!(
            rewrite(&route, " /messages?sessionId=abc").as_deref(),
            Some("/legacy/messages?sessionId=sealed-abc")
        );
        assert_eq!(
            rewrite(&route, "http://127.0.0.1:3001/messages?session_id=abc").as_deref(),
            Some("/legacy/messages?session_id=sealed-abc")
        );
        assert_eq!(
            rewrite(&route, "messages?sessionId=abc").as_deref(),
            Some("messages?sessionId=sealed-abc")
        );
    }

    #[test]
    fn endpoints_that_cannot_be_mapped_and_sealed_are_refused() {
        let route = route();
        for data in [
            "http://localhost:3001/messages?sessionId=abc",
            "http://elsewhere:3001/messages?sessionId=abc",
            "https://127.0.0.1:3001/messages?sessionId=abc",
            "//127.0.0.1:3001/messages?sessionId=abc",
            "/messages?session%5Fid=abc",
            "/messages?SessionId=abc",
            "/messages?sessionId=abc&session_id=def",
            "/messages?sessionId=abc;sessionId=def",
            "/messages?sessionId=abc\n/x",
            "/../elsewhere/messages?sessionId=abc",
            "/a/%2E%2e/messages?sessionId=abc",
            "http://127.0.0.1:3001/x/../messages?sessionId=abc",
            "./messages?sessionId=abc",
            "",
        ] {
            assert_eq!(rewrite(&route, data), None, "{data}");
        }
        let refuse = |_: &str| None;
        let r = EndpointRewriter {
            paths: paths(&route),
            seal: &refuse,
        };
        assert_eq!(r.rewrite("/messages?sessionId=abc"), None, "sealing failed");
    }

    #[test]
    fn endpoints_with_control_characters_are_refused() {
        // Found by fuzz/fuzz_targets/sse.rs: "\0\0\0\0\0\0\0\0\x08/messages?sessionId=(abc"
        // was passed on as a relative reference (it does not start with `/`), but the
        // client's URL parser strips leading control characters and resolves it to
        // `/messages`, outside the route.
        let route = route();
        for data in [
            "\0\0\0\0\0\0\0\0\u{8}/messages?sessionId=(abc",
            "\u{1f}/messages?sessionId=abc",
            "messages?sessionId=abc\u{0}",
            "/mcp/mess\tages?sessionId=abc",
            "/\t/elsewhere.example/messages?sessionId=abc",
            "messages\u{7f}?sessionId=abc",
        ] {
            assert_eq!(rewrite(&route, data), None, "{data:?}");
        }
        // Spaces and tabs around the endpoint are not part of it.
        assert_eq!(
            rewrite(&route, "\t messages?sessionId=abc \t").as_deref(),
            Some("messages?sessionId=sealed-abc")
        );
    }

    #[test]
    fn absolute_urls_that_do_not_parse_are_not_relative_references() {
        // Found by fuzz/fuzz_targets/sse.rs: "http-://127.0.0.1:3002es/?sessionId=0f3c"
        // does not parse as a URL (its port), so it was passed on as a relative
        // reference; a client reads a scheme in it and cannot resolve it at all.
        let route = route();
        for data in [
            "http-://127.0.0.1:3002es/?sessionId=0f3c",
            "http://127.0.0.1:3001x/mcp/messages?sessionId=abc",
            "a:b/messages?sessionId=abc",
        ] {
            assert_eq!(rewrite(&route, data), None, "{data:?}");
        }
        // A colon after the first segment is only a character of the path or query.
        assert_eq!(
            rewrite(&route, "messages/a:b?sessionId=abc&t=1:2").as_deref(),
            Some("messages/a:b?sessionId=sealed-abc&t=1%3A2")
        );
    }

    #[test]
    fn a_route_at_the_root_never_maps_an_endpoint_to_another_host() {
        // Found by fuzz/fuzz_targets/sse.rs: "http://127.0.0.1:3002//127.0.0.1:3002Id=0f3c"
        // on a route at `/` became "//127.0.0.1:3002Id=0f3c", which a client resolves as
        // a scheme-relative reference: another host.
        let text = "listen: 127.0.0.1:1\nadmin: { listen: 127.0.0.1:2 }\nroutes:\n  - { name: root, match: { path: / }, upstream: { url: 'http://127.0.0.1:3002/' } }\n";
        let config = load_str("t", text).unwrap().config;
        let route = Router::new(&config.routes)
            .find(None, "/sse")
            .unwrap()
            .route;
        for data in [
            "http://127.0.0.1:3002//127.0.0.1:3002Id=0f3c",
            "http://127.0.0.1:3002//elsewhere.example/messages?sessionId=abc",
            "/\\elsewhere.example/messages?sessionId=abc",
            "http://127.0.0.1:3002/\\elsewhere.example/messages?sessionId=abc",
        ] {
            assert_eq!(rewrite(&route, data), None, "{data:?}");
        }
        assert_eq!(
            rewrite(&route, "http://127.0.0.1:3002/messages?sessionId=abc").as_deref(),
            Some("/messages?sessionId=sealed-abc")
        );
    }

    #[test]
    fn endpoints_with_a_fragment_are_refused() {
        // Found by fuzz/fuzz_targets/sse.rs: "ages?sessionId#=abc;sed=N/sess=`bbi[" went
        // out unmapped: the mapping read the parameter `sessionId#`, the client reads
        // `sessionId` (the query ends at `#`).
        let route = route();
        for data in [
            "ages?sessionId#=abc;sed=N/sess=`bbi[",
            "messages?sessionId=abc#x",
            "/mcp/messages#?sessionId=abc",
        ] {
            assert_eq!(rewrite(&route, data), None, "{data:?}");
        }
    }

    #[test]
    fn a_path_holding_colon_slash_slash_is_still_checked_for_dot_segments() {
        // Found by fuzz/fuzz_targets/sse.rs: "..\\ED0/..\\%ttp://" was taken for a URL
        // with an authority (it holds `://`), so its path was never checked; as a
        // relative reference it resolves two levels up, outside the route.
        let route = route();
        for data in [
            "..\\ED0/..\\%ttp://",
            "../x?y=a://b",
            "a/../../b://c",
            "http://127.0.0.1:3001\\..\\..\\x",
        ] {
            assert_eq!(rewrite(&route, data), None, "{data:?}");
        }
        assert!(is_scheme("http") && is_scheme("git+ssh") && !is_scheme("..\\x"));
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
        let read =
            |q: &str| session_param_of(&Query::parse(q).unwrap()).map(|v| v.map(str::to_string));
        assert_eq!(read("a=1&sessionId=v1.k.x"), Ok(Some("v1.k.x".to_string())));
        assert_eq!(read("a=1"), Ok(None));
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
            assert!(read(query).is_err(), "{query}");
        }
        assert_eq!(map_session_param("/m?sessionId=%zz", &up), None);
    }

    #[test]
    fn absolute_upstream_urls_become_public_paths() {
        let route = route();
        assert_eq!(
            public_endpoint(paths(&route), "http://127.0.0.1:3001/messages?s=1").as_deref(),
            Some("/legacy/messages?s=1")
        );
        assert_eq!(
            public_endpoint(paths(&route), "http://elsewhere:1/messages"),
            None
        );
        assert_eq!(
            public_endpoint(paths(&route), "messages?s=1").as_deref(),
            Some("messages?s=1")
        );
    }

    #[test]
    fn announced_endpoints_map_back_to_public_paths() {
        let text = "\
listen: 127.0.0.1:1
admin: { listen: 127.0.0.1:2 }
routes:
  - { name: a, match: { path: /a }, upstream: { url: 'http://127.0.0.1:3/mcp' } }
  - { name: ab, match: { path: /a/b }, upstream: { url: 'http://127.0.0.1:3/' } }
  - { name: root, match: { path: / }, upstream: { url: 'http://127.0.0.1:5/base' } }
";
        let r = Router::new(&load_str("t", text).unwrap().config.routes);
        let ab = r.find(None, "/a/b").unwrap().route;
        assert_eq!(
            public_path_for(paths(&ab), "/messages?sessionId=1").as_deref(),
            Some("/a/b/messages?sessionId=1")
        );
        let a = r.find(None, "/a").unwrap().route;
        assert_eq!(
            public_path_for(paths(&a), "/mcp/messages").as_deref(),
            Some("/a/messages")
        );
        assert_eq!(public_path_for(paths(&a), "/other/messages"), None);
        assert_eq!(public_path_for(paths(&a), "/mcpx"), None);
        let root = r.find(None, "/zzz").unwrap().route;
        assert_eq!(
            public_path_for(paths(&root), "/base?s=1").as_deref(),
            Some("/?s=1")
        );
    }
}

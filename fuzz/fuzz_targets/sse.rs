//! The SSE event splitter (`mcp::sse`) and the legacy endpoint rewriter (`mcp::legacy`).
//! On every input:
//! - nothing panics;
//! - the events read do not depend on where the stream is cut into chunks;
//! - what the gateway writes back ([`Event::render`]) reads, for a client starting a
//!   stream with it, as the very event the gateway checked (same type, same data);
//! - an endpoint the rewriter lets through resolves, against the public stream URL, to
//!   the gateway's own origin, inside the route, with every parameter a framework could
//!   read as the session id sealed.
#![no_main]

use std::cell::RefCell;
use std::sync::{Arc, LazyLock};

use drawbridge::config::{load_str, Route, Router};
use drawbridge::mcp::legacy::{EndpointRewriter, RoutePaths};
use drawbridge::mcp::sse::{Event, EventReader, StreamError};
use drawbridge_fuzz::split_chunks;
use libfuzzer_sys::fuzz_target;

const MAX_EVENT: usize = 4096;

fn read(chunks: &[&[u8]]) -> Result<Vec<Event>, StreamError> {
    let mut reader = EventReader::new(MAX_EVENT);
    let mut events = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        events.extend(reader.push(chunk, i + 1 == chunks.len())?);
    }
    Ok(events)
}

/// Two legacy routes: one under a prefix, with an upstream base path; one at the root.
static ROUTES: LazyLock<Vec<Arc<Route>>> = LazyLock::new(|| {
    let text = "listen: 127.0.0.1:1\nadmin: { listen: 127.0.0.1:2 }\nroutes:\n  \
        - { name: legacy, match: { path: /legacy }, upstream: { url: 'http://127.0.0.1:3001/mcp' } }\n  \
        - { name: root, match: { path: / }, upstream: { url: 'http://127.0.0.1:3002/' } }\n";
    let config = load_str("fuzz", text)
        .expect("the fuzz config loads")
        .config;
    let router = Router::new(&config.routes);
    ["/legacy/sse", "/sse"]
        .iter()
        .map(|path| router.find(None, path).expect("a route").route)
        .collect()
});

/// Whether the most liberal framework could read the (decoded) parameter `name` as the
/// legacy session id: cut at `[`, `]`, `.` or `=` (qs), trimmed, case-folded the way
/// Java's `equalsIgnoreCase` folds (`ſ`, `K`, `ı`, `İ` included).
fn could_be_session_name(name: &str) -> bool {
    let base = name
        .split(['[', ']', '.', '='])
        .next()
        .unwrap_or_default()
        .trim();
    let folded: String = base
        .chars()
        .map(|c| match c {
            '\u{17F}' => 's',
            '\u{212A}' => 'k',
            '\u{130}' | '\u{131}' => 'i',
            c => c.to_ascii_lowercase(),
        })
        .collect();
    folded == "sessionid" || folded == "session_id"
}

fn check_endpoint(route: &Route, stream_path: &str, data: &str) {
    let sealed = RefCell::new(Vec::new());
    let seal = |id: &str| {
        let out = format!("SEALED{}", sealed.borrow().len());
        sealed.borrow_mut().push(out.clone());
        let _ = id;
        Some(out)
    };
    let paths = RoutePaths {
        upstream: &route.upstream.url,
        upstream_base_path: &route.upstream.base_path,
        public_prefix: &route.path_prefix,
    };
    let Some(public) = (EndpointRewriter { paths, seal: &seal }).rewrite(data) else {
        return;
    };
    assert!(!public.contains(['\n', '\r']), "{public:?}");
    let base = url::Url::parse("http://gateway.test")
        .and_then(|u| u.join(stream_path))
        .expect("the stream URL");
    let resolved = base
        .join(&public)
        .unwrap_or_else(|e| panic!("{public:?} does not resolve: {e}"));
    assert_eq!(
        resolved.origin(),
        base.origin(),
        "{data:?} became {public:?}"
    );
    let prefix = route.path_prefix.trim_end_matches('/');
    assert!(
        resolved.path() == prefix || resolved.path().starts_with(&format!("{prefix}/")),
        "{data:?} became {public:?}, outside the route"
    );
    for (name, value) in resolved.query_pairs() {
        if could_be_session_name(&name) {
            assert!(
                sealed.borrow().iter().any(|s| *s == value),
                "{data:?} became {public:?}: session parameter {name:?} not sealed"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let chunks = split_chunks(data);
    let whole = chunks.concat();
    let at_once = read(&[&whole]);
    let in_chunks = read(&chunks);
    match (&at_once, &in_chunks) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "events depend on the chunking"),
        // The cap is checked as data arrives, so a chunked read may fail where the whole
        // one does too; both must fail alike or not at all.
        (Err(a), Err(b)) => assert_eq!(a, b),
        (a, b) => panic!("whole: {a:?}, in chunks: {b:?}"),
    }
    if let Ok(events) = &at_once {
        for event in events {
            let rendered = event.render(None);
            // The client has no cap (rendering may lengthen an event: `data:x` gets its
            // space, a CRLF becomes LF).
            let again = EventReader::new(usize::MAX)
                .push(&rendered, true)
                .expect("the gateway's own output reads");
            let (kind, data) = (event.kind(), event.data());
            match again.as_slice() {
                [one] => {
                    assert_eq!(one.kind(), kind, "{rendered:?}");
                    assert_eq!(one.data(), data, "{rendered:?}");
                }
                other => panic!("one event rendered as {}: {rendered:?}", other.len()),
            }
        }
    }

    if let Ok(text) = std::str::from_utf8(&whole) {
        check_endpoint(&ROUTES[0], "/legacy/sse", text);
        check_endpoint(&ROUTES[1], "/sse", text);
    }
});

//! Step 1 of the request path: which route serves a request, and what path the upstream
//! sees. Optional host, then the longest path prefix that ends on a segment boundary.

use std::sync::Arc;

use super::Route;

/// Routes in match order: longest prefix first, host-specific before host-less.
#[derive(Debug, Clone, Default)]
pub struct Router {
    /// (position in the configuration, route)
    routes: Vec<(usize, Arc<Route>)>,
}

/// A matched route and the path (with query) to send upstream.
#[derive(Debug, Clone)]
pub struct RouteMatch {
    /// Position of the route in `Config::routes`, for per-route state kept elsewhere.
    pub index: usize,
    pub route: Arc<Route>,
    pub upstream_path: String,
}

impl Router {
    pub fn new(routes: &[Arc<Route>]) -> Router {
        let mut routes: Vec<(usize, Arc<Route>)> = routes.iter().cloned().enumerate().collect();
        routes.sort_by_key(|(_, r)| (std::cmp::Reverse(r.path_prefix.len()), r.host.is_none()));
        Router { routes }
    }

    /// Finds the route for `host` (the request's Host, port ignored) and `path_and_query`.
    pub fn find(&self, host: Option<&str>, path_and_query: &str) -> Option<RouteMatch> {
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_and_query, None),
        };
        let host = host.map(strip_port);
        let (index, route) = self.routes.iter().find(|(_, r)| {
            r.host
                .as_deref()
                .is_none_or(|want| host.is_some_and(|h| h.eq_ignore_ascii_case(want)))
                && prefix_matches(&r.path_prefix, path)
        })?;
        let rest = if route.path_prefix == "/" {
            path
        } else {
            &path[route.path_prefix.len()..]
        };
        let mut upstream_path =
            String::with_capacity(route.upstream.base_path.len() + rest.len() + 1);
        upstream_path.push_str(&route.upstream.base_path);
        upstream_path.push_str(rest);
        if upstream_path.is_empty() {
            upstream_path.push('/');
        }
        if let Some(q) = query {
            upstream_path.push('?');
            upstream_path.push_str(q);
        }
        Some(RouteMatch {
            index: *index,
            route: route.clone(),
            upstream_path,
        })
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_once(']').map_or(host, |(h, _)| &h[1..]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// `/a/b` matches `/a/b`, `/a/b/` and `/a/b/c`, never `/a/bc`.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return path.starts_with('/');
    }
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    fn router() -> Router {
        let text = "\
listen: 127.0.0.1:1
admin: { listen: 127.0.0.1:2 }
routes:
  - { name: a, match: { path: /a }, upstream: { url: 'http://127.0.0.1:3/mcp' } }
  - { name: ab, match: { path: /a/b }, upstream: { url: 'http://127.0.0.1:3/' } }
  - { name: host-a, match: { path: /a, host: mcp.example.com }, upstream: { url: 'http://127.0.0.1:4/x/' } }
  - { name: root, match: { path: / }, upstream: { url: 'http://127.0.0.1:5/base' } }
";
        Router::new(&load_str("t", text).unwrap().config.routes)
    }

    fn hit(host: Option<&str>, path: &str) -> (String, String) {
        let m = router().find(host, path).unwrap();
        (m.route.name.clone(), m.upstream_path)
    }

    #[test]
    fn longest_prefix_on_segment_boundaries() {
        assert_eq!(hit(None, "/a"), ("a".into(), "/mcp".into()));
        assert_eq!(hit(None, "/a/"), ("a".into(), "/mcp/".into()));
        assert_eq!(hit(None, "/a/b/sse"), ("ab".into(), "/sse".into()));
        assert_eq!(hit(None, "/a/b"), ("ab".into(), "/".into()));
        assert_eq!(hit(None, "/abc"), ("root".into(), "/base/abc".into()));
    }

    #[test]
    fn query_is_kept() {
        assert_eq!(
            hit(None, "/a/b/messages?sessionId=1&x=%20"),
            ("ab".into(), "/messages?sessionId=1&x=%20".into())
        );
    }

    #[test]
    fn host_specific_routes_win_and_ignore_case_and_port() {
        assert_eq!(
            hit(Some("MCP.example.com:8443"), "/a/z"),
            ("host-a".into(), "/x/z".into())
        );
        assert_eq!(hit(Some("other.example"), "/a/z").0, "a");
    }

    #[test]
    fn no_match_without_a_root_route() {
        let text = "listen: 127.0.0.1:1\nadmin: { listen: 127.0.0.1:2 }\nroutes:\n  - { name: a, match: { path: /a }, upstream: { url: 'http://127.0.0.1:3/' } }\n";
        let router = Router::new(&load_str("t", text).unwrap().config.routes);
        assert!(router.find(None, "/b").is_none());
        assert!(router.find(None, "/ab").is_none());
    }
}

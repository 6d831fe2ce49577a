//! OAuth 2.0 Protected Resource Metadata (RFC 9728) for each protected route, served by
//! the gateway itself. The document and every URL in it derive from the route's
//! `public_url` — never from the request — so they stay right behind a TLS-terminating
//! load balancer.

use bytes::Bytes;

use crate::config::Route;

pub const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// The metadata URL for a resource URI: the well-known segment inserted between host and
/// path (RFC 9728 §3.1).
pub fn metadata_url(public_url: &url::Url) -> String {
    let mut origin = format!(
        "{}://{}",
        public_url.scheme(),
        public_url.host_str().unwrap_or_default()
    );
    if let Some(port) = public_url.port() {
        origin.push_str(&format!(":{port}"));
    }
    format!("{origin}{}", metadata_path(public_url.path()))
}

/// `/.well-known/oauth-protected-resource` + the resource path (without trailing slash).
pub fn metadata_path(resource_path: &str) -> String {
    let path = resource_path.trim_end_matches('/');
    format!("{WELL_KNOWN}{path}")
}

/// The JSON document for a route.
pub fn document(route: &Route, authorization_servers: &[String]) -> String {
    let Some(auth) = &route.auth else {
        return "{}".into();
    };
    let mut doc = serde_json::Map::new();
    let resource = route
        .public_url
        .as_ref()
        .map_or_else(String::new, |u| u.as_str().to_string());
    doc.insert("resource".into(), resource.into());
    doc.insert(
        "authorization_servers".into(),
        authorization_servers.to_vec().into(),
    );
    if !auth.scopes_supported.is_empty() {
        doc.insert(
            "scopes_supported".into(),
            auth.scopes_supported.clone().into(),
        );
    }
    doc.insert("bearer_methods_supported".into(), vec!["header"].into());
    if let Some(name) = &auth.resource_name {
        doc.insert("resource_name".into(), name.clone().into());
    }
    if let Some(docs) = &auth.resource_documentation {
        doc.insert("resource_documentation".into(), docs.as_str().into());
    }
    serde_json::Value::Object(doc).to_string()
}

/// Where each metadata document is served: (host or any, path) → route and body.
#[derive(Debug, Default)]
pub struct MetadataIndex {
    entries: Vec<Entry>,
}

#[derive(Debug)]
struct Entry {
    /// `None`: any host.
    host: Option<String>,
    path: String,
    /// The route the document describes (its position in the configuration).
    route: usize,
    body: Bytes,
}

impl MetadataIndex {
    /// `routes` with their authorization servers (issuer identifiers).
    pub fn new(routes: &[(&Route, Vec<String>)]) -> MetadataIndex {
        let mut entries = Vec::new();
        // Positions in `routes`, so that a metadata request is counted under its route.
        let protected: Vec<_> = routes
            .iter()
            .enumerate()
            .filter(|(_, (r, _))| r.auth.is_some())
            .collect();
        for (index, (route, servers)) in &protected {
            let body = Bytes::from(document(route, servers));
            let mut paths = vec![metadata_path(&route.path_prefix)];
            if let Some(url) = &route.public_url {
                let from_url = metadata_path(url.path());
                if !paths.contains(&from_url) {
                    paths.push(from_url);
                }
            }
            // The root form only where it is unambiguous: the one protected route for
            // its host (or the only protected route at all, for host-less routes).
            let same_host = protected
                .iter()
                .filter(|(_, (other, _))| other.host == route.host)
                .count();
            if same_host == 1 && (route.host.is_some() || protected.len() == 1) {
                paths.push(WELL_KNOWN.to_string());
            }
            for path in paths {
                entries.push(Entry {
                    host: route.host.clone(),
                    path,
                    route: *index,
                    body: body.clone(),
                });
            }
        }
        // Host-specific entries first, so they win over host-less ones.
        entries.sort_by_key(|e| e.host.is_none());
        MetadataIndex { entries }
    }

    /// The document for a request, if its path is a metadata path of some route, with
    /// that route's position in the list given to [`MetadataIndex::new`].
    pub fn find(&self, host: Option<&str>, path: &str) -> Option<(usize, Bytes)> {
        if !path.starts_with(WELL_KNOWN) {
            return None;
        }
        let path = path.trim_end_matches('/');
        let host = host.map(|h| h.rsplit_once(':').map_or(h, |(h, _)| h));
        self.entries
            .iter()
            .find(|e| {
                e.path == path
                    && e.host
                        .as_deref()
                        .is_none_or(|w| host.is_some_and(|h| h.eq_ignore_ascii_case(w)))
            })
            .map(|e| (e.route, e.body.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_urls_insert_the_well_known_segment() {
        let u = url::Url::parse("https://mcp.example.com/everything/mcp").unwrap();
        assert_eq!(
            metadata_url(&u),
            "https://mcp.example.com/.well-known/oauth-protected-resource/everything/mcp"
        );
        let root = url::Url::parse("http://127.0.0.1:8080/").unwrap();
        assert_eq!(
            metadata_url(&root),
            "http://127.0.0.1:8080/.well-known/oauth-protected-resource"
        );
    }
}

//! `routes[]`: matching, the public URL, the upstream, `auth`, `policy` and origins
//! (`rate_limits.rs`: their `rate_limit` blocks).

use std::collections::HashMap;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use super::{valid_scope, Checker};
use crate::config::raw::{RawAuth, RawPolicy, RawRoute, RawRule, RawTimeouts};
use crate::config::{
    units, Route, RouteAuth, Upstream, UpstreamAuth, DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT,
    DEFAULT_STREAM_IDLE_TIMEOUT,
};
use crate::policy::{CallRules, Glob, Policy, Rule, RuleSet};

impl Checker<'_> {
    pub(super) fn route(
        &mut self,
        at: &str,
        raw: &RawRoute,
        issuer_names: &HashMap<&str, usize>,
    ) -> Option<Route> {
        self.name(&format!("{at}.name"), &raw.name);
        let upstream_auth = match &raw.upstream_auth {
            None => {
                if raw.auth.is_some() {
                    self.warnings.push(format!(
                        "route `{}` has no `upstream_auth`: its upstream receives no credential",
                        raw.name
                    ));
                }
                Some(UpstreamAuth::None)
            }
            Some(u) => self.upstream_auth(
                &format!("{at}.upstream_auth"),
                u,
                issuer_names,
                raw.auth.is_some(),
            ),
        };
        let tool_rate_limits = match &raw.policy {
            None => Vec::new(),
            Some(p) => self.tool_rate_limits(&format!("{at}.policy"), p),
        };
        let rate_limit = raw
            .rate_limit
            .as_ref()
            .and_then(|r| self.rate_limit(&format!("{at}.rate_limit"), r, raw.auth.is_some()));
        let policy = match &raw.policy {
            None => None,
            Some(p) => {
                if raw.auth.is_none() {
                    self.error(
                        &format!("{at}.policy"),
                        "a policy needs an `auth` block: scopes come from verified tokens",
                    );
                }
                Some(self.policy(&format!("{at}.policy"), p))
            }
        };
        let pins = raw.policy.as_ref().and_then(|p| p.pins.as_ref());
        let pins = pins.and_then(|p| self.pins(&format!("{at}.policy.pins"), p));
        let path_prefix = self.path_prefix(&format!("{at}.match.path"), &raw.matcher.path);
        let host = match &raw.matcher.host {
            None => None,
            Some(h) => self.host(&format!("{at}.match.host"), h),
        };
        let public_url = match &raw.public_url {
            None => None,
            Some(u) => self.public_url(&format!("{at}.public_url"), u),
        };
        let upstream = self.upstream(at, raw);
        let allowed_origins = self.allowed_origins(
            &format!("{at}.allowed_origins"),
            raw.allowed_origins.as_deref().unwrap_or_default(),
        );
        let auth = match &raw.auth {
            None => None,
            Some(a) => Some(self.auth(
                &format!("{at}.auth"),
                a,
                issuer_names,
                raw.public_url.is_some(),
                public_url.as_ref(),
            )?),
        };
        Some(Route {
            name: raw.name.clone(),
            host,
            path_prefix: path_prefix?,
            public_url,
            upstream: upstream?,
            auth,
            upstream_auth: upstream_auth?,
            policy,
            pins,
            allowed_origins,
            rate_limit,
            tool_rate_limits,
        })
    }

    pub(super) fn auth(
        &mut self,
        at: &str,
        raw: &RawAuth,
        issuer_names: &HashMap<&str, usize>,
        has_public_url: bool,
        public_url: Option<&url::Url>,
    ) -> Option<RouteAuth> {
        if !has_public_url {
            self.error(
                at,
                "a protected route needs `public_url`: it is the audience tokens must carry",
            );
        }
        if raw.issuers.is_empty() {
            self.error(&format!("{at}.issuers"), "name at least one issuer");
        }
        let mut issuers = Vec::new();
        for (i, name) in raw.issuers.iter().enumerate() {
            match issuer_names.get(name.as_str()) {
                Some(index) => issuers.push(*index),
                None => self.error(
                    &format!("{at}.issuers[{i}]"),
                    format!("no issuer named `{name}` in `issuers`"),
                ),
            }
        }
        for (key, scopes) in [
            ("required_scopes", &raw.required_scopes),
            ("scopes_supported", &raw.scopes_supported),
        ] {
            for (i, scope) in scopes.iter().enumerate() {
                if !valid_scope(scope) {
                    self.error(
                        &format!("{at}.{key}[{i}]"),
                        "a scope is printable ASCII without spaces, quotes or backslashes",
                    );
                }
            }
        }
        let audiences = self.audiences(&format!("{at}.audiences"), raw.audiences.as_deref());
        if let (Some(url), false) = (public_url, audiences.is_empty()) {
            if !audiences.iter().any(|a| a == url.as_str()) {
                self.warnings.push(format!(
                    "{at}.audiences does not list the route's public_url: tokens that MCP clients obtain with an RFC 8707 `resource` (for the public_url) will be refused"
                ));
            }
        }
        let resource_documentation = match &raw.resource_documentation {
            None => None,
            Some(u) => {
                let at = format!("{at}.resource_documentation");
                let u = self.expand(&at, u)?;
                Some(self.http_url(&at, &u)?)
            }
        };
        let scopes_supported = if raw.scopes_supported.is_empty() {
            raw.required_scopes.clone()
        } else {
            raw.scopes_supported.clone()
        };
        Some(RouteAuth {
            // Missing: reported above (or, when invalid, by `public_url`); no route.
            public_url: public_url?.clone(),
            audiences,
            issuers,
            required_scopes: raw.required_scopes.clone(),
            scopes_supported,
            resource_name: raw.resource_name.clone(),
            resource_documentation,
        })
    }

    /// `auth.audiences`: non-empty strings, each once; absent: empty (the public URL).
    pub(super) fn audiences(&mut self, at: &str, raw: Option<&[String]>) -> Vec<String> {
        let Some(raw) = raw else {
            return Vec::new();
        };
        if raw.is_empty() {
            self.error(
                at,
                "list at least one audience, or leave the key out to accept the public_url",
            );
        }
        let mut audiences: Vec<String> = Vec::new();
        for (i, value) in raw.iter().enumerate() {
            let at = format!("{at}[{i}]");
            let Some(value) = self.expand(&at, value) else {
                continue;
            };
            if value.is_empty() || value.trim() != value {
                self.error(
                    &at,
                    "an audience is a non-empty value without leading or trailing spaces",
                );
            } else if audiences.contains(&value) {
                self.error(&at, "listed twice");
            } else {
                audiences.push(value);
            }
        }
        audiences
    }

    /// `allowed_origins`: each an origin as browsers send it, `scheme://host[:port]`
    /// (http or https, no path, no wildcard), kept in its serialised form.
    pub(super) fn allowed_origins(&mut self, at: &str, raw: &[String]) -> Vec<String> {
        let mut origins = Vec::new();
        for (i, text) in raw.iter().enumerate() {
            let at = format!("{at}[{i}]");
            let Some(text) = self.expand(&at, text) else {
                continue;
            };
            match crate::config::origin::serialise(&text) {
                Ok(origin) => {
                    if !origins.contains(&origin) {
                        origins.push(origin);
                    }
                }
                Err(why) => self.error(&at, why),
            }
        }
        origins
    }

    pub(super) fn policy(&mut self, at: &str, raw: &RawPolicy) -> Policy {
        let default_allow = match raw.default.as_deref() {
            None | Some("deny") => false,
            Some("allow") => true,
            Some(_) => {
                self.error(&format!("{at}.default"), "must be `deny` or `allow`");
                false
            }
        };
        let require = match &raw.require {
            None => Vec::new(),
            Some(r) => self.claim_rules(&format!("{at}.require.claims"), &r.claims),
        };
        let tools = self.rule_set(at, "tools", &raw.tools);
        let resources = self.rule_set(at, "resources", &raw.resources);
        let prompts = self.rule_set(at, "prompts", &raw.prompts);
        let methods = self.rule_set(at, "methods", &raw.methods);
        let mut call_rules = CallRules::default();
        for (kind, map) in [
            ("tools", &raw.tools),
            ("resources", &raw.resources),
            ("prompts", &raw.prompts),
            ("methods", &raw.methods),
        ] {
            self.call_rules(at, kind, map, &mut call_rules);
        }
        Policy {
            default_allow,
            require,
            tools,
            resources,
            prompts,
            methods,
            call_rules,
            shadow: self.mode(&format!("{at}.mode"), raw.mode.as_deref()),
        }
    }

    /// The rules of one kind (`tools`, …), in the short form (a list of scopes) or the
    /// long form (`{scopes, claims}`).
    fn rule_set(
        &mut self,
        at: &str,
        kind: &str,
        map: &std::collections::BTreeMap<String, RawRule>,
    ) -> RuleSet {
        let mut rules = Vec::new();
        for (pattern, rule) in map {
            let path = format!("{at}.{kind}.{pattern}");
            if pattern.is_empty() {
                self.error(&path, "an empty pattern matches nothing");
            }
            let (scopes, claims) = match rule {
                RawRule::Scopes(scopes) => (scopes, Vec::new()),
                RawRule::Full(full) => (
                    &full.scopes,
                    self.claim_rules(&format!("{path}.claims"), &full.claims),
                ),
            };
            for scope in scopes {
                if !valid_scope(scope) {
                    self.error(
                        &path,
                        "a scope is printable ASCII without spaces, quotes or backslashes",
                    );
                }
            }
            rules.push(Rule {
                glob: Glob::new(pattern),
                scopes: scopes.clone(),
                claims,
            });
        }
        let (set, ambiguous) = RuleSet::new(rules);
        for (a, b) in ambiguous {
            self.error(
                &format!("{at}.{kind}"),
                format!("patterns `{a}` and `{b}` can match the same name with equal specificity; make one more specific"),
            );
        }
        set
    }

    pub(super) fn path_prefix(&mut self, at: &str, value: &str) -> Option<String> {
        let value = self.expand(at, value)?;
        if !value.starts_with('/') || value.contains(['?', '#', ' ']) {
            self.error(
                at,
                "must be an absolute path such as `/everything/mcp` (no query, fragment or spaces)",
            );
            return None;
        }
        let trimmed = value.trim_end_matches('/');
        Some(if trimmed.is_empty() {
            "/".to_string()
        } else {
            trimmed.to_string()
        })
    }

    pub(super) fn host(&mut self, at: &str, value: &str) -> Option<String> {
        let value = self.expand(at, value)?.to_ascii_lowercase();
        let ok = !value.is_empty()
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'));
        if !ok {
            self.error(
                at,
                "must be a host name such as `mcp.example.com` (no scheme or port)",
            );
            return None;
        }
        Some(value)
    }

    pub(super) fn public_url(&mut self, at: &str, value: &str) -> Option<url::Url> {
        let value = self.expand(at, value)?;
        let url = self.http_url(at, &value)?;
        if url.query().is_some() {
            self.error(at, "must not have a query");
            return None;
        }
        Some(url)
    }

    /// An absolute http(s) URL with a host, no credentials and no fragment.
    pub(super) fn http_url(&mut self, at: &str, value: &str) -> Option<url::Url> {
        let url = match url::Url::parse(value) {
            Ok(u) => u,
            Err(e) => {
                self.error(at, format!("not a valid absolute URL ({e})"));
                return None;
            }
        };
        if !matches!(url.scheme(), "http" | "https") {
            self.error(at, "the scheme must be http or https");
            return None;
        }
        if url.host_str().is_none_or(str::is_empty) {
            self.error(at, "the URL needs a host");
            return None;
        }
        if !url.username().is_empty() || url.password().is_some() {
            self.error(
                at,
                "credentials in the URL are not allowed: use upstream_auth instead",
            );
            return None;
        }
        if url.fragment().is_some() {
            self.error(at, "must not have a fragment");
            return None;
        }
        Some(url)
    }

    pub(super) fn upstream(&mut self, at: &str, raw: &RawRoute) -> Option<Upstream> {
        let timeouts = self.timeouts(&format!("{at}.upstream.timeouts"), &raw.upstream.timeouts);
        let url_at = format!("{at}.upstream.url");
        let value = self.expand(&url_at, &raw.upstream.url)?;
        let url = self.http_url(&url_at, &value)?;
        if url.query().is_some() {
            self.error(&url_at, "must not have a query");
            return None;
        }
        let ca_certs = match &raw.upstream.tls {
            None => None,
            Some(tls) => {
                let at = format!("{at}.upstream.tls.ca_file");
                if url.scheme() != "https" {
                    self.error(&at, "a CA file only applies to https upstreams");
                    return None;
                }
                Some(self.ca_file(&at, &tls.ca_file)?)
            }
        };
        let host = url.host_str()?.trim_matches(['[', ']']).to_string();
        let port = url.port_or_known_default()?;
        let authority = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str()?),
            None => url.host_str()?.to_string(),
        };
        // A parsed URL's host is ASCII (IDNA, IPv6 in brackets), so this holds; checked
        // here so that building the run-time state has nothing left to fail on.
        let Ok(authority) = http::HeaderValue::from_str(&authority) else {
            self.error(&url_at, "the host is not a valid `Host` header");
            return None;
        };
        let base_path = url.path().trim_end_matches('/').to_string();
        let (connect_timeout, read_timeout, stream_idle_timeout) = timeouts;
        Some(Upstream {
            tls: url.scheme() == "https",
            host,
            port,
            authority,
            base_path,
            connect_timeout,
            read_timeout,
            stream_idle_timeout,
            ca_certs,
            forward_cookies: raw.upstream.forward_cookies.unwrap_or(false),
            url,
        })
    }

    /// Reads a PEM file of CA certificates; each must parse as X.509.
    pub(super) fn ca_file(&mut self, at: &str, path: &str) -> Option<Vec<Vec<u8>>> {
        let path = self.expand(at, path)?;
        let pem = match self.read(&path) {
            Ok(pem) => pem,
            Err(e) => {
                self.error(at, format!("cannot read `{path}`: {e}"));
                return None;
            }
        };
        let certs: Result<Vec<Vec<u8>>, _> = CertificateDer::pem_slice_iter(&pem)
            .map(|c| c.map(|der| der.as_ref().to_vec()))
            .collect();
        match certs {
            Ok(certs)
                if !certs.is_empty()
                    && certs
                        .iter()
                        .all(|der| x509_parser::parse_x509_certificate(der).is_ok()) =>
            {
                Some(certs)
            }
            _ => {
                self.error(at, format!("`{path}` holds no valid PEM certificate"));
                None
            }
        }
    }

    pub(super) fn timeouts(
        &mut self,
        at: &str,
        raw: &Option<RawTimeouts>,
    ) -> (
        std::time::Duration,
        std::time::Duration,
        std::time::Duration,
    ) {
        let mut pick = |key: &str, value: Option<&String>, default| match value {
            None => default,
            Some(text) => match units::parse_duration(text) {
                Ok(d) if !d.is_zero() => d,
                Ok(_) => {
                    self.error(&format!("{at}.{key}"), "must be more than 0");
                    default
                }
                Err(e) => {
                    self.error(&format!("{at}.{key}"), e);
                    default
                }
            },
        };
        let raw = raw.as_ref();
        (
            pick(
                "connect",
                raw.and_then(|t| t.connect.as_ref()),
                DEFAULT_CONNECT_TIMEOUT,
            ),
            pick(
                "read",
                raw.and_then(|t| t.read.as_ref()),
                DEFAULT_READ_TIMEOUT,
            ),
            pick(
                "stream_idle",
                raw.and_then(|t| t.stream_idle.as_ref()),
                DEFAULT_STREAM_IDLE_TIMEOUT,
            ),
        )
    }

    pub(super) fn check_unique(&mut self, routes: &[Arc<Route>]) {
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut matches: HashMap<(Option<&str>, &str), &str> = HashMap::new();
        for (i, route) in routes.iter().enumerate() {
            if let Some(first) = names.insert(&route.name, i) {
                let _ = first;
                self.error(
                    &format!("routes[{i}].name"),
                    format!("duplicate route name `{}`", route.name),
                );
            }
            let key = (route.host.as_deref(), route.path_prefix.as_str());
            if let Some(other) = matches.insert(key, &route.name) {
                self.error(
                    &format!("routes[{i}].match"),
                    format!("same host and path as route `{other}`: one of them could never match"),
                );
            }
        }
    }
}

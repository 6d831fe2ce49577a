//! `drawbridge explain`: the decision the gateway would make on one request, and why,
//! step by step, from the configuration, a caller and a request body. Pure: the caller
//! (a checked token, or scopes and claims as given) comes from [`caller`], which does
//! the I/O.
//!
//! Every decision here is made by the functions the request path calls (inspection,
//! `mcp::methods`, `policy::authorize_calls`, `Refusal::of_denial`, the pins' verdicts,
//! `Policy::item_visible`), in the request path's order, so explain and the gateway
//! cannot disagree on what they both judge. What depends on more than the body and the
//! caller is named in the output as not judged: the `Mcp-*` headers, the protocol
//! version header's effect on batches, sessions, rate limits, the upstream credential,
//! and whether a pinned tool's definition was last listed changed.

pub mod caller;

use http::HeaderMap;
use serde_json::{json, Value};

use crate::auth::{AuthFailure, Principal, RouteGuard};
use crate::config::{Route, UpstreamAuth};
use crate::mcp::arguments::CallArguments;
use crate::mcp::canonical::tool_digest;
use crate::mcp::filter::ListKind;
use crate::mcp::jsonrpc::{self, Inspected};
use crate::mcp::request_meta::{self, MetaError};
use crate::policy::pins::{OnChange, PinVerdict};
use crate::policy::{self, ClaimSet, Decision, Grants, Operation, Policy};
use crate::refusal::Refusal;

/// What explain knows of the caller.
#[derive(Debug, Clone)]
pub enum Identity {
    /// `--scopes` (and `--claims`): the caller as given; the token's issuer, audience
    /// and lifetime are not judged.
    Given {
        scopes: Vec<String>,
        claims: ClaimSet,
    },
    /// A token the route accepts: verified against its issuer's keys, or only decoded
    /// (`verified: false`, `--no-verify`).
    Token {
        principal: Principal,
        verified: bool,
    },
    /// A token the route would refuse, and why.
    Refused {
        failure: AuthFailure,
        verified: bool,
    },
}

/// A caller's scopes and claims, as policy reads them.
struct Held<'a> {
    scopes: &'a [String],
    claims: &'a ClaimSet,
}

impl Grants for Held<'_> {
    fn scopes(&self) -> &[String] {
        self.scopes
    }
    fn claims(&self) -> &ClaimSet {
        self.claims
    }
}

static NO_CLAIMS: ClaimSet = ClaimSet::EMPTY;

impl Identity {
    /// What policy sees of this caller on `route`: nothing on a public route (the gateway
    /// reads no token there), nothing for a refused token.
    fn held<'a>(&'a self, route: &Route) -> Held<'a> {
        let nothing = Held {
            scopes: &[],
            claims: &NO_CLAIMS,
        };
        if route.auth.is_none() {
            return nothing;
        }
        match self {
            Identity::Given { scopes, claims } => Held { scopes, claims },
            Identity::Token { principal, .. } => Held {
                scopes: &principal.scopes,
                claims: &principal.claims,
            },
            Identity::Refused { .. } => nothing,
        }
    }
}

/// One line of the explanation: the step and what it found. `operation` is the index of
/// the message a line is about (its rule, arguments, shadow rules and decision).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub step: &'static str,
    pub detail: String,
    pub operation: Option<usize>,
}

/// The decision and the steps that led to it.
#[derive(Debug)]
pub struct Explanation {
    pub steps: Vec<Step>,
    /// `None`: the request is forwarded.
    pub refusal: Option<Refusal>,
    /// The body as inspected, for the refusal's JSON-RPC error (its ids).
    inspected: Option<Inspected>,
    /// What explain cannot judge from a body and a caller.
    pub not_judged: Vec<&'static str>,
}

/// What no explanation judges without the request's headers (`--header`).
const HEADERS_NOT_JUDGED: &str =
    "the request's Mcp-* and MCP-Protocol-Version headers (none given with --header)";

/// What every explanation of a request leaves to the running gateway.
const NOT_JUDGED: [&str; 3] = [
    "the session id, rate limits and the upstream credential",
    "the upstream's answer (lists are filtered: see --list)",
    "the request body's arrival within the client timeouts",
];

impl Explanation {
    pub fn allowed(&self) -> bool {
        self.refusal.is_none()
    }

    fn push(&mut self, step: &'static str, detail: impl Into<String>) {
        self.steps.push(Step {
            step,
            detail: detail.into(),
            operation: None,
        });
    }

    fn push_for(&mut self, operation: usize, step: &'static str, detail: impl Into<String>) {
        self.steps.push(Step {
            step,
            detail: detail.into(),
            operation: Some(operation),
        });
    }

    fn refuse(mut self, refusal: Refusal) -> Explanation {
        self.refusal = Some(refusal);
        self
    }

    /// The JSON-RPC error body the gateway answers with, when it refuses.
    pub fn refusal_body(&self) -> Option<Value> {
        let body = self.refusal.as_ref()?.body(self.inspected.as_ref());
        serde_json::from_str(&body).ok()
    }

    /// For people: one line per step, then the decision.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let label = |s: &Step| match s.operation {
            Some(_) if s.step != "operation" => format!("  {}", s.step),
            _ => s.step.to_string(),
        };
        let width = self.steps.iter().map(|s| label(s).len()).max().unwrap_or(0);
        for s in &self.steps {
            out.push_str(&format!("{:width$}  {}\n", label(s), s.detail));
        }
        match &self.refusal {
            None => out.push_str("decision: ALLOW (forwarded to the upstream)\n"),
            Some(r) => {
                out.push_str(&format!(
                    "decision: DENY {} {} ({})\n  message: {}\n",
                    r.status(),
                    http_reason(r.status()),
                    r.kind(),
                    r.message()
                ));
                if let Some(challenge) = r.www_authenticate() {
                    out.push_str(&format!("  WWW-Authenticate: {challenge}\n"));
                }
            }
        }
        out.push_str("not judged here:\n");
        for n in &self.not_judged {
            out.push_str(&format!("  - {n}\n"));
        }
        out
    }

    /// For scripts: `{decision, status, kind, message, www_authenticate, body, steps,
    /// not_judged}`.
    pub fn to_json(&self) -> Value {
        let steps: Vec<Value> = self
            .steps
            .iter()
            .map(|s| json!({"step": s.step, "detail": s.detail, "operation": s.operation}))
            .collect();
        let r = self.refusal.as_ref();
        json!({
            "decision": if self.allowed() { "allow" } else { "deny" },
            "status": r.map_or(200, Refusal::status),
            "kind": r.map(Refusal::kind),
            "message": r.map(Refusal::message),
            "www_authenticate": r.and_then(Refusal::www_authenticate),
            "body": self.refusal_body(),
            "steps": steps,
            "not_judged": self.not_judged,
        })
    }
}

fn http_reason(status: u16) -> &'static str {
    http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("")
}

/// The request explained: its body, and the headers given for it (the `Mcp-*` and
/// `MCP-Protocol-Version` headers are judged against the body when any is given).
pub struct Request<'r> {
    pub body: &'r [u8],
    pub headers: &'r HeaderMap,
}

/// Explains a POST of `request` to `route` by `identity`, with the configuration's
/// `max_body` and `max_batch`.
pub fn explain(
    route: &Route,
    limits: (usize, usize),
    identity: &Identity,
    request: &Request<'_>,
) -> Explanation {
    let (max_body, max_batch) = limits;
    let (body, headers) = (request.body, request.headers);
    let mut not_judged = NOT_JUDGED.to_vec();
    if headers.is_empty() {
        not_judged.insert(0, HEADERS_NOT_JUDGED);
    }
    let mut ex = Explanation {
        steps: Vec::new(),
        refusal: None,
        inspected: None,
        not_judged,
    };
    ex.push("route", describe_route(route));
    let guard = RouteGuard::for_route(route);
    // Authenticate.
    if let Err(refusal) = authenticate(&mut ex, route, guard.as_ref(), identity) {
        return ex.refuse(refusal);
    }
    // Inspect.
    if body.len() > max_body {
        ex.push(
            "body",
            format!(
                "{} bytes, more than limits.max_body ({max_body})",
                body.len()
            ),
        );
        return ex.refuse(Refusal::BodyTooLarge);
    }
    let inspected = match jsonrpc::inspect(body) {
        Ok(inspected) => inspected,
        Err(malformed) => {
            let refusal = Refusal::from(malformed);
            ex.push("body", format!("refused: {}", refusal.message()));
            return ex.refuse(refusal);
        }
    };
    ex.push("body", describe_body(&inspected));
    let guard = guard.as_ref();
    let refusal = judge_inspected(
        &mut ex, route, max_batch, identity, request, &inspected, guard,
    );
    ex.inspected = Some(inspected);
    match refusal {
        Some(refusal) => ex.refuse(refusal),
        None => {
            ex.push(
                "upstream",
                format!(
                    "forwarded to {} with {}",
                    route.upstream.url,
                    describe_credential(&route.upstream_auth)
                ),
            );
            ex
        }
    }
}

/// The steps after inspection, in the gateway's order: the headers against the body, a
/// removed method, the batch rules, the policy, the pins. `Some`: the refusal.
fn judge_inspected(
    ex: &mut Explanation,
    route: &Route,
    max_batch: usize,
    identity: &Identity,
    request: &Request<'_>,
    inspected: &Inspected,
    guard: Option<&RouteGuard>,
) -> Option<Refusal> {
    let headers = request.headers;
    if !headers.is_empty() {
        if let Err(e) = request_meta::check(headers, inspected) {
            let refusal = match e {
                MetaError::BatchWithClaim => Refusal::BatchNotSupported,
                e => Refusal::RequestMeta(e),
            };
            ex.push("headers", format!("refused: {}", refusal.message()));
            return Some(refusal);
        }
        ex.push("headers", "agree with the body");
    }
    if inspected.names_removed_method() {
        ex.push(
            "method",
            "a method the protocol version the request names has removed",
        );
        return Some(Refusal::MethodRemoved);
    }
    if inspected.batch {
        // The gateway's order: a version without batches, then the length.
        if !request_meta::batches_allowed(headers) {
            ex.push(
                "batch",
                "refused: the MCP-Protocol-Version given has no batches (2025-06-18 and later)",
            );
            return Some(Refusal::BatchNotSupported);
        }
        if inspected.messages.len() > max_batch {
            ex.push(
                "batch",
                format!(
                    "{} messages, more than limits.max_batch ({max_batch})",
                    inspected.messages.len()
                ),
            );
            return Some(Refusal::BatchTooLong);
        }
        if headers.is_empty() {
            ex.push(
                "batch",
                "refused (400) when the request's MCP-Protocol-Version is 2025-06-18 or later; judged as sent without one",
            );
        }
    }
    let held = identity.held(route);
    let decided = authorize(ex, route, &held, inspected, request.body, guard);
    decided.err().or_else(|| pins(ex, route, inspected))
}

fn describe_route(route: &Route) -> String {
    let host = route
        .host
        .as_deref()
        .map_or(String::new(), |h| format!("host {h}, "));
    let kind = match &route.auth {
        Some(_) => "protected",
        None => "public",
    };
    format!(
        "`{}` ({host}path {}, {kind}; upstream {})",
        route.name, route.path_prefix, route.upstream.url
    )
}

/// The authenticate step: a protected route's caller must be accepted, with the route's
/// `required_scopes`.
fn authenticate(
    ex: &mut Explanation,
    route: &Route,
    guard: Option<&RouteGuard>,
    identity: &Identity,
) -> Result<(), Refusal> {
    let Some(guard) = guard else {
        ex.push(
            "caller",
            "public route: no token is read, the caller holds no scopes",
        );
        return Ok(());
    };
    let audience = route
        .auth
        .as_ref()
        .map_or(String::new(), |a| a.public_url.to_string());
    match identity {
        Identity::Given { scopes, claims } => {
            let mut detail = format!(
                "as given: scopes [{}]{}; issuer, audience ({audience}) and lifetime not judged",
                scopes.join(" "),
                describe_claims(claims)
            );
            let missing = missing(&guard.required_scopes, scopes);
            if !missing.is_empty() {
                detail.push_str(&format!(
                    "; lacks the route's required scope(s) {}",
                    missing.join(" ")
                ));
                ex.push("caller", detail);
                return Err(auth_refusal(guard, AuthFailure::InsufficientScope));
            }
            ex.push("caller", detail);
        }
        Identity::Token {
            principal,
            verified,
        } => {
            ex.push(
                "caller",
                format!(
                    "token {}: issuer {}, subject {}{}, audience {audience} accepted",
                    if *verified {
                        "verified"
                    } else {
                        "DECODED, NOT VERIFIED"
                    },
                    principal.issuer,
                    principal.subject,
                    principal
                        .client_id
                        .as_deref()
                        .map_or(String::new(), |c| format!(", client {c}")),
                ),
            );
            ex.push(
                "scopes",
                format!(
                    "granted [{}]{}",
                    principal.scopes.join(" "),
                    describe_claims(&principal.claims)
                ),
            );
        }
        Identity::Refused { failure, verified } => {
            ex.push(
                "caller",
                format!(
                    "token refused ({}{}): {}",
                    failure.reason(),
                    if *verified { "" } else { ", decoded only" },
                    failure.description()
                ),
            );
            return Err(auth_refusal(guard, failure.clone()));
        }
    }
    let required = match guard.required_scopes.is_empty() {
        true => "the route requires no scope beyond a valid token".to_string(),
        false => format!(
            "the route's scopes [{}] held",
            guard.required_scopes.join(" ")
        ),
    };
    ex.push("required", required);
    Ok(())
}

fn describe_credential(auth: &UpstreamAuth) -> &'static str {
    match auth {
        UpstreamAuth::None => "no credential",
        UpstreamAuth::TokenExchange(_) => "a token exchanged for the caller's (RFC 8693)",
        UpstreamAuth::ClientCredentials(_) => "the gateway's own token (client credentials)",
        UpstreamAuth::OnBehalfOf(_) => "an on-behalf-of token",
        UpstreamAuth::Static { .. } => "the route's static header",
    }
}

fn auth_refusal(guard: &RouteGuard, failure: AuthFailure) -> Refusal {
    let challenge = guard.challenge(&failure);
    Refusal::Auth { failure, challenge }
}

fn missing(needed: &[String], held: &[String]) -> Vec<String> {
    needed
        .iter()
        .filter(|s| !held.contains(s))
        .cloned()
        .collect()
}

fn describe_claims(claims: &ClaimSet) -> String {
    if claims.is_empty() {
        return String::new();
    }
    let each: Vec<String> = claims
        .iter()
        .map(|(name, values)| format!("{name}=[{}]", values.join(" ")))
        .collect();
    format!("; claims {}", each.join(", "))
}

fn describe_body(inspected: &Inspected) -> String {
    let ops: Vec<String> = inspected
        .messages
        .iter()
        .map(|m| describe_op(Operation::of(&m.kind)))
        .collect();
    match inspected.batch {
        true => format!("a batch of {}: {}", ops.len(), ops.join(", ")),
        false => ops.join(", "),
    }
}

fn describe_op(op: Operation<'_>) -> String {
    match op.target() {
        Some(target) => format!("{} `{target}`", op.method()),
        None => op.method().to_string(),
    }
}

/// The policy step: each operation judged as the gateway judges it, and the request's
/// decision made by `policy::authorize_calls` itself.
fn authorize(
    ex: &mut Explanation,
    route: &Route,
    held: &Held<'_>,
    inspected: &Inspected,
    body: &[u8],
    guard: Option<&RouteGuard>,
) -> Result<(), Refusal> {
    let Some(policy) = route.policy.as_ref() else {
        ex.push(
            "policy",
            "none on this route: every operation passes with the route's scopes",
        );
        return Ok(());
    };
    let arguments = CallArguments::new(body);
    let source = |i, h| arguments.of(i, h);
    for (index, m) in inspected.messages.iter().enumerate() {
        let op = Operation::of(&m.kind);
        let judgment = policy.judge(held, op, index, &source);
        ex.push_for(index, "operation", describe_op(op));
        ex.push_for(index, "rule", deciding_rule(policy, op));
        for outcome in &judgment.arguments {
            let result = match outcome.result {
                Ok(()) => "holds".to_string(),
                Err(failure) => policy::arguments::describe(&outcome.rule, failure.reason()),
            };
            let shadow = if outcome.shadow { " (shadow)" } else { "" };
            ex.push_for(
                index,
                "argument",
                format!("{}{shadow}: {result}", outcome.rule),
            );
        }
        for s in &judgment.shadowed {
            ex.push_for(
                index,
                "shadow",
                format!(
                    "rule `{}` would {} ({}): recorded, not enforced",
                    s.rule,
                    s.decision.label(),
                    describe_decision(&s.decision)
                ),
            );
        }
        ex.push_for(index, "decision", describe_decision(&judgment.decision));
    }
    let (result, _, _) = policy::authorize_calls(Some(policy), held, Some(inspected), &source);
    result
        .map(|_| ())
        .map_err(|denial| Refusal::of_denial(denial, guard))
}

/// The rule that decides `op`, and what it needs.
fn deciding_rule(policy: &Policy, op: Operation<'_>) -> String {
    let (kind, set, name) = match op {
        Operation::Tool(n) => ("tools", &policy.tools, n),
        Operation::Prompt(n) => ("prompts", &policy.prompts, n),
        Operation::Resource { uri, .. } => ("resources", &policy.resources, uri),
        Operation::Method(m) => ("methods", &policy.methods, m),
        Operation::Response => return "a response to the server: the route's scopes".into(),
        Operation::Request => return "a request without a message".into(),
    };
    match set.find(name) {
        Some(rule) => {
            let claims: Vec<String> = rule.claims.iter().map(|c| c.label()).collect();
            format!(
                "{kind} `{}` needs scopes [{}]{}",
                rule.glob.as_str(),
                rule.scopes.join(" "),
                if claims.is_empty() {
                    String::new()
                } else {
                    format!(" and {}", claims.join(", "))
                }
            )
        }
        None if matches!(op, Operation::Method(m) if policy::route_level(m)) => {
            "no methods rule: a lifecycle, list or utility method needs only the route's scopes"
                .into()
        }
        None => format!(
            "no {kind} rule matches: default {}",
            if policy.default_allow {
                "allow"
            } else {
                "deny"
            }
        ),
    }
}

fn describe_decision(decision: &Decision) -> String {
    match decision {
        Decision::Allow { .. } => "allow".into(),
        Decision::MissingScopes { missing, .. } => {
            format!("deny: missing scope(s) {}", missing.join(" "))
        }
        Decision::NotPermitted => "deny: not permitted on this route (no scope would help)".into(),
        Decision::ClaimsFailed { rule } => format!("deny: claim rule {rule} fails"),
        Decision::ArgumentsFailed { rule, reason } => {
            format!("deny: {}", policy::arguments::describe(rule, reason))
        }
    }
}

/// The pins step (`policy.pins`, `on_change: hide`): a call of a tool the lock file does
/// not name is refused. Whether a pinned tool's definition was last listed changed is
/// the running gateway's memory, not judged here.
fn pins(ex: &mut Explanation, route: &Route, inspected: &Inspected) -> Option<Refusal> {
    let pins = route.pins.as_ref()?;
    let tools = inspected
        .messages
        .iter()
        .filter_map(|m| match Operation::of(&m.kind) {
            Operation::Tool(name) => Some(name),
            _ => None,
        });
    for name in tools {
        let pinned = pins.is_pinned(name);
        match (pins.on_change, pinned) {
            (OnChange::Hide, false) => {
                ex.push(
                    "pins",
                    format!("tool `{name}` is not in {}: refused (on_change: hide)", pins.file),
                );
                return Some(Refusal::tool_not_pinned(name));
            }
            (OnChange::Warn, false) => ex.push(
                "pins",
                format!("tool `{name}` is not in {}: passed with a warning (on_change: warn)", pins.file),
            ),
            (_, true) => ex.push(
                "pins",
                format!(
                    "tool `{name}` is pinned in {}; refused only if the gateway last listed it with another definition",
                    pins.file
                ),
            ),
        }
    }
    None
}

/// One item of a list answer and whether the caller sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedItem {
    pub kind: ListKind,
    pub name: String,
    /// `None`: shown; else why it is hidden.
    pub hidden: Option<String>,
    /// A shown item that a rule in shadow mode would hide once enforced, and why.
    pub shadowed: Option<String>,
}

/// `--list` with a saved list answer (a JSON-RPC answer or its `result`): each item,
/// shown or hidden, by the gateway's own rules (`Policy::item_visible`, the pins'
/// verdicts).
pub fn list_answer(
    route: &Route,
    identity: &Identity,
    answer: &str,
) -> Result<Vec<ListedItem>, String> {
    let value: Value =
        serde_json::from_str(answer).map_err(|e| format!("the answer is not JSON: {e}"))?;
    let result = value.get("result").unwrap_or(&value);
    let held = identity.held(route);
    let mut items = Vec::new();
    for kind in [
        ListKind::Tools,
        ListKind::Resources,
        ListKind::ResourceTemplates,
        ListKind::Prompts,
    ] {
        let Some(list) = result.get(kind.field()) else {
            continue;
        };
        let list = list
            .as_array()
            .ok_or_else(|| format!("`{}` is not an array", kind.field()))?;
        for item in list {
            let name = item
                .get(kind.key())
                .and_then(Value::as_str)
                .ok_or_else(|| format!("an item of `{}` has no `{}`", kind.field(), kind.key()))?;
            let hidden = item_hidden(route, &held, kind, name, item);
            let shadowed = match (&hidden, &route.policy) {
                (None, Some(policy)) => {
                    Operation::of_item(kind, name).and_then(|op| shadowed_denial(policy, &held, op))
                }
                _ => None,
            };
            items.push(ListedItem {
                kind,
                name: name.to_string(),
                hidden,
                shadowed,
            });
        }
    }
    if items.is_empty()
        && !["tools", "resources", "resourceTemplates", "prompts"]
            .iter()
            .any(|f| result.get(f).is_some())
    {
        return Err("the answer has no tools, resources, resourceTemplates or prompts".into());
    }
    Ok(items)
}

/// Why a rule in shadow mode lets the caller see `op` it would otherwise not see.
fn shadowed_denial(policy: &Policy, held: &Held<'_>, op: Operation<'_>) -> Option<String> {
    let decision = policy.decide(held, op);
    (!decision.is_allow()).then(|| describe_decision(&decision))
}

fn item_hidden(
    route: &Route,
    held: &Held<'_>,
    kind: ListKind,
    name: &str,
    item: &Value,
) -> Option<String> {
    if let Some(policy) = &route.policy {
        if !policy.item_visible(held, kind, name) {
            return Some(match Operation::of_item(kind, name) {
                Some(op) => describe_decision(&policy.decide(held, op)),
                None => "no resource rule whose scopes the caller holds matches its URIs".into(),
            });
        }
    }
    let pins = route.pins.as_ref().filter(|_| kind == ListKind::Tools)?;
    let digest = tool_digest(&item.to_string()).ok();
    match pins.verdict(name, digest.as_deref()) {
        PinVerdict::Matches => None,
        verdict if pins.on_change == OnChange::Hide => Some(format!("pins: {}", verdict.reason())),
        _ => None,
    }
}

/// `--list` without an answer: each rule of `tools`, `resources` and `prompts`, and
/// whether the caller would see what it matches.
pub fn list_rules(route: &Route, identity: &Identity) -> Vec<String> {
    let Some(policy) = &route.policy else {
        return vec!["no policy: the caller sees every item the upstream lists".into()];
    };
    let held = identity.held(route);
    let mut out = Vec::new();
    for (kind, set) in [
        ("tools", &policy.tools),
        ("resources", &policy.resources),
        ("prompts", &policy.prompts),
    ] {
        for rule in set.rules() {
            let pattern = rule.glob.as_str();
            let op = match kind {
                "tools" => Operation::Tool(pattern),
                "prompts" => Operation::Prompt(pattern),
                _ => Operation::Resource {
                    method: "resources/read",
                    uri: pattern,
                },
            };
            // A rule's own pattern is decided by that rule (it is the most specific
            // match of itself).
            let seen = match policy.visible(&held, op) {
                true => match shadowed_denial(policy, &held, op) {
                    None => "shown".to_string(),
                    Some(why) => format!("shown (shadow mode; enforced: hidden, {why})"),
                },
                false => format!("hidden ({})", describe_decision(&policy.decide(&held, op))),
            };
            out.push(format!("{kind} {pattern}: {seen}"));
        }
    }
    out.push(format!(
        "anything else: {}",
        if policy.default_allow && policy.failed_requirement(&held).is_none() {
            "shown (default allow)"
        } else {
            "hidden (default deny)"
        }
    ));
    if let Some(pins) = &route.pins {
        out.push(format!(
            "pins ({}, on_change: {}): tools whose definition is not their pin are {}",
            pins.file,
            match pins.on_change {
                OnChange::Hide => "hide",
                OnChange::Warn => "warn",
            },
            match pins.on_change {
                OnChange::Hide => "hidden",
                OnChange::Warn => "shown, with a warning",
            }
        ));
    }
    out
}

#[cfg(test)]
mod tests;

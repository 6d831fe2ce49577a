//! Step 4 of the request path: one policy engine answers both "may this principal call
//! X?" and (for list filtering) "may this principal see X?". Pure functions over the
//! route's rules and the caller's scopes; no I/O, nothing about HTTP.
//!
//! Rules (from `routes[].policy`): `tools` and `prompts` by name, `resources` by URI,
//! `methods` for every other method. Patterns are [`Glob`]s; the most specific matching
//! rule applies and all its scopes are required. Lifecycle and utility methods
//! ([`route_level`], as the table of methods in `mcp::methods` says) need only the
//! route's `required_scopes` unless a `methods` rule says otherwise. Names no rule covers follow `default` (deny unless configured).
//! A permit ([`Permit`]) is the only proof that a request was authorized; forwarding
//! requires one.
//!
//! Claim rules ([`claims`]) sit next to scopes: `require` for every request on the
//! route, and per rule in the long form `{scopes: [...], claims: {...}}`. A claim rule
//! that fails refuses the operation with no step-up (more scopes would not help), and
//! hides the item from lists like a missing scope does.

pub mod arguments;
pub mod claims;
mod glob;
pub mod judge;
pub mod pins;

pub use claims::{ClaimName, ClaimRule, ClaimSet};
pub use glob::Glob;
pub use judge::{CallRules, EntryKind, EntryRules, Judgment, Shadowed};

/// What a caller holds, as policy reads it: granted scopes and the claims rules name.
/// A bare list of scopes is a caller without claims.
pub trait Grants {
    fn scopes(&self) -> &[String];
    fn claims(&self) -> &ClaimSet;
}

static NO_CLAIMS: ClaimSet = ClaimSet::EMPTY;

/// A caller with no scopes and no claims (on a route without `auth`).
pub static NOTHING_GRANTED: [String; 0] = [];

impl Grants for [String] {
    fn scopes(&self) -> &[String] {
        self
    }
    fn claims(&self) -> &ClaimSet {
        &NO_CLAIMS
    }
}

impl<const N: usize> Grants for [String; N] {
    fn scopes(&self) -> &[String] {
        self
    }
    fn claims(&self) -> &ClaimSet {
        &NO_CLAIMS
    }
}

impl Grants for Vec<String> {
    fn scopes(&self) -> &[String] {
        self
    }
    fn claims(&self) -> &ClaimSet {
        &NO_CLAIMS
    }
}

use crate::mcp::jsonrpc::{Inspected, MessageKind};
use crate::mcp::methods::{self, Governed, ListKind, Target};

/// Methods that, without a `methods` rule, need only the route's `required_scopes`:
/// the lifecycle (`initialize`; MCP 2026-07-28's `server/discover`, which replaces the
/// handshake), utilities, the list methods (whose answers are filtered) and MCP
/// 2026-07-28's `subscriptions/listen` (which replaces the GET stream; what flows on it
/// is filtered like any other server-to-client message), and every notification. The
/// table of methods says which ([`Governed::Route`]).
pub fn route_level(method: &str) -> bool {
    methods::governed(method) == Governed::Route
}

/// One rule: a pattern, the scopes it requires (all of them) and its claim rules (each
/// must hold).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub glob: Glob,
    pub scopes: Vec<String>,
    pub claims: Vec<ClaimRule>,
}

/// Rules of one kind, most specific first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleSet {
    rules: Vec<Rule>,
}

impl RuleSet {
    /// Orders rules by specificity. Returns pairs of patterns that overlap with equal
    /// specificity (ambiguous: the validator refuses them).
    pub fn new(mut rules: Vec<Rule>) -> (RuleSet, Vec<(String, String)>) {
        rules.sort_by_key(|r| std::cmp::Reverse(r.glob.specificity()));
        let mut ambiguous = Vec::new();
        for (i, a) in rules.iter().enumerate() {
            for b in &rules[i + 1..] {
                if a.glob.specificity() == b.glob.specificity()
                    && a.glob != b.glob
                    && a.glob.overlaps(&b.glob)
                {
                    ambiguous.push((a.glob.as_string(), b.glob.as_string()));
                }
            }
        }
        (RuleSet { rules }, ambiguous)
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The most specific rule matching `name`.
    pub fn find(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.glob.matches(name))
    }
}

/// A route's policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub default_allow: bool,
    /// `require.claims`: claim rules every request on the route must satisfy.
    pub require: Vec<ClaimRule>,
    pub tools: RuleSet,
    pub resources: RuleSet,
    pub prompts: RuleSet,
    pub methods: RuleSet,
    /// Argument rules and modes of tool, prompt and resource entries ([`judge`]).
    pub call_rules: CallRules,
    /// `mode: shadow`: every decision recorded, none enforced ([`judge`]).
    pub shadow: bool,
}

/// What a message asks to do, as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation<'a> {
    Tool(&'a str),
    Resource {
        method: &'a str,
        uri: &'a str,
    },
    Prompt(&'a str),
    Method(&'a str),
    /// The client answering a server request (sampling, elicitation, roots).
    Response,
    /// A request that carries no message (a GET stream, a DELETE), judged only when the
    /// route's `require` refuses it.
    Request,
}

impl<'a> Operation<'a> {
    pub fn of(kind: &'a MessageKind) -> Operation<'a> {
        match kind {
            MessageKind::Response => Operation::Response,
            MessageKind::Call { method, target } => Operation::call(method, target.as_deref()),
        }
    }

    /// A call of `method` on `target` (as inspection extracted it), judged by its
    /// target's rules when the table of methods says it has one.
    pub fn call(method: &'a str, target: Option<&'a str>) -> Operation<'a> {
        let Some(row) = methods::lookup(method) else {
            return Operation::Method(method);
        };
        match (row.target(), target) {
            (Some(Target::Tool), Some(name)) => Operation::Tool(name),
            (Some(Target::Prompt), Some(name)) => Operation::Prompt(name),
            (Some(Target::Resource), Some(uri)) => Operation::Resource {
                method: row.name,
                uri,
            },
            _ => Operation::Method(method),
        }
    }

    /// The operation a listed item stands for (calling a listed tool), whose rule decides
    /// whether the item is shown; `None` for a resource template, which names no URI.
    pub fn of_item(kind: ListKind, name: &'a str) -> Option<Operation<'a>> {
        methods::item_method(kind).map(|m| Operation::call(m.name, Some(name)))
    }

    pub fn method(&self) -> &'a str {
        match self {
            Operation::Tool(_) => "tools/call",
            Operation::Prompt(_) => "prompts/get",
            Operation::Resource { method, .. } => method,
            Operation::Method(m) => m,
            Operation::Response => "response",
            Operation::Request => "request",
        }
    }

    /// The tool or prompt name or resource URI, if the operation has one.
    pub fn target(&self) -> Option<&'a str> {
        match self {
            Operation::Tool(n) | Operation::Prompt(n) => Some(n),
            Operation::Resource { uri, .. } => Some(uri),
            _ => None,
        }
    }
}

/// The outcome for one operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed; `scopes` are what the matching rule requires (for downscoping).
    Allow { scopes: Vec<String> },
    /// The rule requires `needed`; the caller lacks `missing`.
    MissingScopes {
        needed: Vec<String>,
        missing: Vec<String>,
    },
    /// No rule covers it and the default is deny: no scope would help.
    NotPermitted,
    /// A claim rule failed (`rule` is its label, e.g. `claims:groups`): no scope would
    /// help either.
    ClaimsFailed { rule: String },
    /// An argument rule failed (`rule` is its label, e.g. `arguments:/path`; `reason`
    /// says how, never with the value): no scope would help.
    ArgumentsFailed { rule: String, reason: &'static str },
}

impl Decision {
    pub fn label(&self) -> &'static str {
        match self {
            Decision::Allow { .. } => "allow",
            Decision::MissingScopes { .. } => "deny",
            Decision::NotPermitted => "deny",
            Decision::ClaimsFailed { .. } => "deny",
            Decision::ArgumentsFailed { .. } => "deny",
        }
    }

    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }

    /// Which rule refused, for audit: `scopes`, `default` or a claim rule's label.
    pub fn rule(&self) -> Option<&str> {
        match self {
            Decision::Allow { .. } => None,
            Decision::MissingScopes { .. } => Some("scopes"),
            Decision::NotPermitted => Some("default"),
            Decision::ClaimsFailed { rule } => Some(rule),
            Decision::ArgumentsFailed { rule, .. } => Some(rule),
        }
    }
}

/// What an operation needs: the scopes and claim rules of the rule that decides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs<'p> {
    pub scopes: &'p [String],
    pub claims: &'p [ClaimRule],
}

impl Needs<'_> {
    const NOTHING: Needs<'static> = Needs {
        scopes: &[],
        claims: &[],
    };

    fn of(rule: &Rule) -> Needs<'_> {
        Needs {
            scopes: &rule.scopes,
            claims: &rule.claims,
        }
    }

    /// Held when every scope is granted and every claim rule holds.
    fn held_by(&self, granted: &(impl Grants + ?Sized)) -> bool {
        self.scopes.iter().all(|s| granted.scopes().contains(s))
            && claims::first_failing(self.claims, granted.claims()).is_none()
    }
}

impl Policy {
    /// The scopes an operation needs beyond the route's, or `None` when no scope can
    /// permit it.
    pub fn required_scopes_for(&self, op: Operation<'_>) -> Option<&[String]> {
        self.needs(op).map(|n| n.scopes)
    }

    /// What the rule deciding `op` needs, or `None` when nothing can permit it. The
    /// route's `require` is checked apart (it applies to every request).
    pub fn needs(&self, op: Operation<'_>) -> Option<Needs<'_>> {
        let (rules, name) = match op {
            Operation::Response | Operation::Request => return Some(Needs::NOTHING),
            Operation::Tool(n) => (&self.tools, n),
            Operation::Prompt(n) => (&self.prompts, n),
            Operation::Resource { uri, .. } => (&self.resources, uri),
            Operation::Method(m) => {
                if let Some(rule) = self.methods.find(m) {
                    return Some(Needs::of(rule));
                }
                if route_level(m) {
                    return Some(Needs::NOTHING);
                }
                return self.default_allow.then_some(Needs::NOTHING);
            }
        };
        match rules.find(name) {
            Some(rule) => Some(Needs::of(rule)),
            None => self.default_allow.then_some(Needs::NOTHING),
        }
    }

    /// The route's `require` rule the caller fails, if any.
    pub fn failed_requirement(&self, granted: &(impl Grants + ?Sized)) -> Option<&ClaimRule> {
        claims::first_failing(&self.require, granted.claims())
    }

    /// Decides one operation for a caller holding `granted` scopes and claims. A failed
    /// claim rule decides before missing scopes: a step-up could not lift it.
    pub fn decide(&self, granted: &(impl Grants + ?Sized), op: Operation<'_>) -> Decision {
        if let Some(failed) = self.failed_requirement(granted) {
            return Decision::ClaimsFailed {
                rule: failed.label(),
            };
        }
        match self.needs(op) {
            None => Decision::NotPermitted,
            Some(needs) => {
                if let Some(failed) = claims::first_failing(needs.claims, granted.claims()) {
                    return Decision::ClaimsFailed {
                        rule: failed.label(),
                    };
                }
                let needed = needs.scopes;
                let missing: Vec<String> = needed
                    .iter()
                    .filter(|s| !granted.scopes().contains(s))
                    .cloned()
                    .collect();
                if missing.is_empty() {
                    Decision::Allow {
                        scopes: needed.to_vec(),
                    }
                } else {
                    Decision::MissingScopes {
                        needed: needed.to_vec(),
                        missing,
                    }
                }
            }
        }
    }

    /// May the caller see this item in a list? Exactly "may they call it", so listing and
    /// calling never disagree.
    /// (`decide` without its allocations: it runs once per listed item.)
    pub fn visible(&self, granted: &(impl Grants + ?Sized), op: Operation<'_>) -> bool {
        if self.shadowed(op) {
            return true;
        }
        self.failed_requirement(granted).is_none()
            && self.needs(op).is_some_and(|needs| needs.held_by(granted))
    }

    /// May the caller see an item of a list answer (a tool, prompt, resource or resource
    /// template, by its name, URI or URI template)?
    pub fn item_visible(
        &self,
        granted: &(impl Grants + ?Sized),
        kind: ListKind,
        name: &str,
    ) -> bool {
        match Operation::of_item(kind, name) {
            Some(op) => self.visible(granted, op),
            None => self.template_visible(granted, name),
        }
    }

    /// May the caller see a resource template? Visible when some URI the template can
    /// produce could be read: `{…}` expressions become `*`, and the template is shown if
    /// a resource rule whose scopes the caller holds can match the same URI (or, with
    /// `default: allow`, if no rule claims all of its URIs for scopes the caller lacks).
    pub fn template_visible(&self, granted: &(impl Grants + ?Sized), uri_template: &str) -> bool {
        if self.shadow {
            return true;
        }
        if self.failed_requirement(granted).is_some() {
            return false;
        }
        let pattern = template_glob(uri_template);
        let held = |r: &Rule| Needs::of(r).held_by(granted);
        let reachable = self
            .resources
            .rules()
            .iter()
            .any(|r| held(r) && r.glob.overlaps(&pattern));
        reachable || self.default_allow
    }

    /// Bounded metric label for a tool: its configured name, the pattern that matched,
    /// or `other`.
    pub fn tool_label(&self, name: &str) -> &str {
        match self.tools.find(name) {
            Some(rule) => rule.glob.as_str(),
            None => "other",
        }
    }
}

/// Proof that a request was authorized. Only [`authorize`] makes one; the forwarding
/// step requires it, so "forgot to authorize" cannot forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permit {
    /// The scopes the permitted operations require (rule scopes, deduplicated), for
    /// downscoped upstream credentials.
    pub scopes: Vec<String>,
}

/// One operation's verdict, for metrics and audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict<'a> {
    pub op: Operation<'a>,
    pub decision: Decision,
}

/// Why a request was refused by policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// Every scope the request's operations need (route scopes excluded), for the
    /// challenge's `scope` parameter; empty when no scope would help.
    pub needed: Vec<String>,
    pub missing: Vec<String>,
    /// Human-readable, names the tools/resources/prompts refused; no arguments.
    pub message: String,
    /// True when some operation is not permitted at all (no step-up possible).
    pub not_permitted: bool,
}

/// Authorizes every operation of a request. A request without a body (GET, DELETE)
/// carries no operation and is permitted by the route-level checks already made.
/// A batch is refused whole if any element is refused. Calls are judged as if they
/// carried no arguments (a rule needing one fails): the request path uses
/// [`authorize_calls`], which reads them.
pub fn authorize<'a>(
    policy: Option<&Policy>,
    granted: &(impl Grants + ?Sized),
    inspected: Option<&'a Inspected>,
) -> (Result<Permit, Denial>, Vec<Verdict<'a>>) {
    let (result, verdicts, _) = authorize_calls(policy, granted, inspected, &|_, _| Ok(None));
    (result, verdicts)
}

/// What [`authorize_calls`] found: the permit or denial, each operation's verdict and
/// the shadow decisions (each with its operation).
pub type Authorized<'a> = (
    Result<Permit, Denial>,
    Vec<Verdict<'a>>,
    Vec<(Operation<'a>, Shadowed)>,
);

/// [`authorize`], with argument rules reading each call's arguments from `arguments`
/// and the shadow decisions returned beside the verdicts.
pub fn authorize_calls<'a>(
    policy: Option<&Policy>,
    granted: &(impl Grants + ?Sized),
    inspected: Option<&'a Inspected>,
    arguments: &judge::ArgumentSource<'_>,
) -> Authorized<'a> {
    let mut ops: Vec<Operation<'a>> = inspected
        .map(|i| i.messages.iter().map(|m| Operation::of(&m.kind)).collect())
        .unwrap_or_default();
    // The route's `require` refuses a request without a message too (and its rules in
    // shadow mode are recorded for it).
    if ops.is_empty()
        && policy.is_some_and(|p| {
            p.failed_requirement(granted).is_some() || p.require.iter().any(|r| r.shadow)
        })
    {
        ops.push(Operation::Request);
    }
    let Some(policy) = policy else {
        let verdicts = ops
            .into_iter()
            .map(|op| Verdict {
                op,
                decision: Decision::Allow { scopes: Vec::new() },
            })
            .collect();
        return (Ok(Permit { scopes: Vec::new() }), verdicts, Vec::new());
    };
    let mut shadowed = Vec::new();
    let verdicts: Vec<Verdict<'a>> = ops
        .into_iter()
        .enumerate()
        .map(|(index, op)| {
            let judgment = policy.judge(granted, op, index, arguments);
            shadowed.extend(judgment.shadowed.into_iter().map(|s| (op, s)));
            Verdict {
                decision: judgment.decision,
                op,
            }
        })
        .collect();
    let mut scopes: Vec<String> = Vec::new();
    let mut missing: Vec<String> = Vec::new();
    let mut refused: Vec<String> = Vec::new();
    let mut not_permitted = false;
    for v in &verdicts {
        let needed = match &v.decision {
            Decision::Allow { scopes } => scopes,
            Decision::MissingScopes { needed, missing: m } => {
                refused.push(describe(v.op, Some(m)));
                extend_unique(&mut missing, m);
                needed
            }
            Decision::NotPermitted => {
                refused.push(describe(v.op, None));
                not_permitted = true;
                continue;
            }
            Decision::ClaimsFailed { rule } => {
                refused.push(format!("{} is not permitted by {rule}", what(v.op)));
                not_permitted = true;
                continue;
            }
            Decision::ArgumentsFailed { rule, reason } => {
                refused.push(format!(
                    "{}: {}",
                    what(v.op),
                    arguments::describe(rule, reason)
                ));
                not_permitted = true;
                continue;
            }
        };
        extend_unique(&mut scopes, needed);
    }
    if refused.is_empty() {
        return (Ok(Permit { scopes }), verdicts, shadowed);
    }
    let denial = Denial {
        needed: if not_permitted { Vec::new() } else { scopes },
        missing,
        message: format!("forbidden: {}", refused.join("; ")),
        not_permitted,
    };
    (Err(denial), verdicts, shadowed)
}

/// `file:///{path}` → glob `file:///*`; literal `*` and `?` stay wildcards (harmless:
/// the result only widens what may be shown, never what may be called).
fn template_glob(uri_template: &str) -> Glob {
    let mut out = String::with_capacity(uri_template.len());
    let mut in_expr = false;
    for c in uri_template.chars() {
        match (c, in_expr) {
            ('{', false) => {
                in_expr = true;
                out.push('*');
            }
            ('}', true) => in_expr = false,
            (_, true) => {}
            (c, false) => out.push(c),
        }
    }
    Glob::new(&out)
}

fn extend_unique(into: &mut Vec<String>, from: &[String]) {
    for s in from {
        if !into.contains(s) {
            into.push(s.clone());
        }
    }
}

fn what(op: Operation<'_>) -> String {
    match op {
        Operation::Tool(n) => format!("tool `{n}`"),
        Operation::Prompt(n) => format!("prompt `{n}`"),
        Operation::Resource { uri, .. } => format!("resource `{uri}`"),
        Operation::Method(m) => format!("method `{m}`"),
        Operation::Response => "response".to_string(),
        Operation::Request => "this request".to_string(),
    }
}

fn describe(op: Operation<'_>, missing: Option<&[String]>) -> String {
    let what = what(op);
    match missing {
        Some(m) => format!("{what} needs scope {}", m.join(" ")),
        None => format!("{what} is not permitted on this route"),
    }
}

#[cfg(test)]
mod tests;

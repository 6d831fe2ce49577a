//! The MCP methods a client sends, in one table: what each one targets (a tool, a prompt,
//! a resource URI), whether it is a list and which, how the policy treats it, and the
//! label it is counted under. Inspection (which `params` member names the target),
//! policy (which rules judge it), list filtering (which answers carry items) and metrics
//! (which methods keep their own label) all read this table, so they cannot disagree
//! about a method: a target that inspection extracts but the policy does not judge by
//! would fall back to a method-level rule.
//!
//! Methods the table does not name (a later revision's, an extension's, a typo) are
//! judged by `methods` rules or the route's `default`, and counted as `other`;
//! notifications it does not name are route-level like the ones it does.
//!
//! The tasks methods (`tasks/get`, `tasks/result`, `tasks/list`, `tasks/cancel` of MCP
//! 2025-11-25; `tasks/update` of the 2026-07-28 tasks extension) are named so that they
//! keep their own metric label, and are [`Governed::Default`]: a task's id is not a tool
//! name, so no `tools` rule can judge them, and they are no more route-level than an
//! unknown method. An operator allows them with a `methods` rule (`tasks/*`) or
//! `default: allow`.
//!
//! Owns the names; it decides nothing and parses nothing.

/// A method's place in a JSON-RPC exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Has an id and expects an answer.
    Request,
    /// Has no id.
    Notification,
}

/// What a method acts on, named by a member of its `params`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `params.name`, judged by the `tools` rules.
    Tool,
    /// `params.name`, judged by the `prompts` rules.
    Prompt,
    /// `params.uri`, judged by the `resources` rules.
    Resource,
}

impl Target {
    /// The member of `params` that names the target.
    pub fn member(self) -> &'static str {
        match self {
            Target::Tool | Target::Prompt => "name",
            Target::Resource => "uri",
        }
    }
}

/// How the policy treats a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Governed {
    /// Needs only the route's `required_scopes` unless a `methods` rule names it: the
    /// lifecycle, utilities, lists (whose answers are filtered) and notifications.
    Route,
    /// Judged by the rules of its target's kind (`tools`, `prompts`, `resources`).
    Target(Target),
    /// Judged by a `methods` rule, else by the route's `default`.
    Default,
}

/// The list methods and where their items are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    Tools,
    Prompts,
    Resources,
    ResourceTemplates,
}

/// One row of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Method {
    pub name: &'static str,
    pub kind: Kind,
    pub governed: Governed,
    /// The list this method answers with, whose items are filtered.
    pub list: Option<ListKind>,
}

impl Method {
    /// What the method acts on, if it names a target.
    pub fn target(&self) -> Option<Target> {
        match self.governed {
            Governed::Target(target) => Some(target),
            Governed::Route | Governed::Default => None,
        }
    }

    /// Its label in `drawbridge_mcp_operations_total`: every method of the table keeps
    /// its own.
    pub fn label(&self) -> &'static str {
        self.name
    }
}

/// The table, and [`position`] as one `match` over the same names (so the request path
/// looks a method up without scanning or allocating).
macro_rules! methods {
    ($($name:literal: $kind:ident, $governed:expr, $list:expr;)*) => {
        /// Every MCP method a client sends to a server, in MCP 2025-06-18, 2025-11-25 and
        /// 2026-07-28 (and the 2026-07-28 tasks extension).
        pub const METHODS: &[Method] = &[
            $(Method { name: $name, kind: Kind::$kind, governed: $governed, list: $list },)*
        ];

        /// The row of `name` in [`METHODS`].
        pub fn position(name: &str) -> Option<usize> {
            match name {
                $($name => Some(const { index_of($name) }),)*
                _ => None,
            }
        }
    };
}

use Governed::Route;
use ListKind::{Prompts, ResourceTemplates, Resources, Tools};

/// Methods MCP 2026-07-28 removed (`subscriptions/listen` replaces resource
/// subscriptions). A request naming that revision (or a later one) in its `_meta` and
/// calling one of them is answered "method not found" by the gateway: it carries no
/// target to judge, and the revision's servers do not have it.
pub const REMOVED_IN_2026_07_28: [&str; 2] = ["resources/subscribe", "resources/unsubscribe"];

/// Whether `method` is gone in the protocol `version` a request names in its `_meta`
/// (dates compare as text; `None`: an older request, which has every method).
pub fn removed_in(method: &str, version: Option<&str>) -> bool {
    revision_since(version.map(str::as_bytes), b"2026-07-28")
        && REMOVED_IN_2026_07_28.contains(&method)
}

/// Whether a protocol `version` a request names (`YYYY-MM-DD`) is the revision `since` or
/// a later one: such dates compare as text. Anything else names no revision.
pub fn revision_since(version: Option<&[u8]>, since: &[u8]) -> bool {
    version.is_some_and(|v| v.len() == since.len() && v >= since)
}

methods! {
    "initialize":                       Request, Route, None;
    "server/discover":                  Request, Route, None;
    "subscriptions/listen":             Request, Route, None;
    "ping":                             Request, Route, None;
    "tools/list":                       Request, Route, Some(Tools);
    "tools/call":                       Request, Governed::Target(Target::Tool), None;
    "resources/list":                   Request, Route, Some(Resources);
    "resources/templates/list":         Request, Route, Some(ResourceTemplates);
    "resources/read":                   Request, Governed::Target(Target::Resource), None;
    "resources/subscribe":              Request, Governed::Target(Target::Resource), None;
    "resources/unsubscribe":            Request, Governed::Target(Target::Resource), None;
    "prompts/list":                     Request, Route, Some(Prompts);
    "prompts/get":                      Request, Governed::Target(Target::Prompt), None;
    "completion/complete":              Request, Route, None;
    "logging/setLevel":                 Request, Route, None;
    "tasks/get":                        Request, Governed::Default, None;
    "tasks/result":                     Request, Governed::Default, None;
    "tasks/list":                       Request, Governed::Default, None;
    "tasks/cancel":                     Request, Governed::Default, None;
    "tasks/update":                     Request, Governed::Default, None;
    "notifications/initialized":        Notification, Route, None;
    "notifications/cancelled":          Notification, Route, None;
    "notifications/progress":           Notification, Route, None;
    "notifications/roots/list_changed": Notification, Route, None;
    "notifications/tasks/status":       Notification, Route, None;
}

/// Where `name` stands in [`METHODS`]; evaluated at compile time by [`position`].
const fn index_of(name: &str) -> usize {
    let mut i = 0;
    while i < METHODS.len() {
        let (a, b) = (METHODS[i].name.as_bytes(), name.as_bytes());
        if a.len() == b.len() {
            let mut j = 0;
            while j < a.len() && a[j] == b[j] {
                j += 1;
            }
            if j == a.len() {
                return i;
            }
        }
        i += 1;
    }
    // Evaluated at compile time only (in `const` blocks): a name missing from the
    // table stops the build.
    panic!("a method name that is not in the table")
}

impl ListKind {
    /// The list `method` answers with.
    pub fn of(method: &str) -> Option<ListKind> {
        lookup(method)?.list
    }

    /// The list method answering with this kind.
    pub fn method(self) -> &'static str {
        list_method(self).name
    }
}

/// The table's row for `name`.
pub fn lookup(name: &str) -> Option<&'static Method> {
    METHODS.get(position(name)?)
}

/// How the policy treats `name`, including methods the table does not name.
pub fn governed(name: &str) -> Governed {
    match lookup(name) {
        Some(method) => method.governed,
        None if name.starts_with("notifications/") => Governed::Route,
        None => Governed::Default,
    }
}

/// The list method answering with `kind`.
pub fn list_method(kind: ListKind) -> &'static Method {
    match kind {
        Tools => &METHODS[const { index_of("tools/list") }],
        Prompts => &METHODS[const { index_of("prompts/list") }],
        Resources => &METHODS[const { index_of("resources/list") }],
        ResourceTemplates => &METHODS[const { index_of("resources/templates/list") }],
    }
}

/// The method a listed item stands for (calling a listed tool is `tools/call`), whose
/// rule decides whether the item is shown; `None` for resource templates, which name
/// no single URI.
pub fn item_method(kind: ListKind) -> Option<&'static Method> {
    match kind {
        Tools => Some(&METHODS[const { index_of("tools/call") }]),
        Prompts => Some(&METHODS[const { index_of("prompts/get") }]),
        Resources => Some(&METHODS[const { index_of("resources/read") }]),
        ResourceTemplates => None,
    }
}

#[cfg(test)]
pub(crate) mod tests;

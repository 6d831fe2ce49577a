//! Pinned tool definitions at run time (`policy.pins`): a listed tool whose definition
//! is not its pin is hidden (`hide`) or passed with an audit event (`warn`), and under
//! `hide` a call of such a tool is refused before the upstream sees it.
//!
//! The call race. A `tools/call` carries only a tool's name, not its definition, and an
//! MCP client may call a tool it listed earlier (through another replica, before a
//! restart or a reload) or never listed at all. The gateway therefore refuses, under
//! `hide`:
//! - every call of a tool the lock file does not name (no state needed: unpinned tools
//!   can never be called);
//! - every call of a pinned tool whose definition this configuration of this gateway last
//!   saw listed differently from its pin (remembered per route, by pinned name, until a
//!   list shows the pinned definition again).
//!
//! A pinned tool whose definition this gateway has not seen since it loaded its
//! configuration is called: refusing it would break clients that call before they list,
//! and what they call by that name is what was reviewed unless the upstream changed it,
//! which the first list through this gateway reveals. docs/security/tool-pins.md says
//! what this leaves open.
//!
//! The digest and the verdict are `mcp::canonical` and `policy::pins`; this file holds
//! the memory, and writes the metric and the audit events.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::auth::Principal;
use crate::config::Route;
use crate::mcp::canonical::tool_digest;
use crate::mcp::jsonrpc::Inspected;
use crate::policy::pins::{OnChange, PinVerdict, ToolPins};
use crate::policy::Operation;
use crate::refusal::Refusal;
use crate::telemetry::audit::{self, AuditEvent, Caller};
use crate::telemetry::ids::RequestIds;
use crate::telemetry::RouteMetrics;

/// A route's pins and what this configuration has seen of them.
pub(super) struct PinState {
    pins: Arc<ToolPins>,
    /// Per pinned name: the last definition listed was not the pinned one.
    changed: HashMap<String, AtomicBool>,
}

impl PinState {
    pub(super) fn for_route(route: &Route) -> Option<PinState> {
        let pins = route.pins.clone()?;
        let changed = pins
            .names()
            .map(|n| (n.to_string(), AtomicBool::new(false)))
            .collect();
        Some(PinState { pins, changed })
    }
}

/// The action words of `drawbridge_tool_pin_mismatches_total` and the audit event.
const HIDDEN: &str = "hidden";
const WARNED: &str = "warned";
const CALL_REFUSED: &str = "call_refused";

/// Where a verdict is recorded: the route, its metrics, the caller and the request.
pub(super) struct Recorder<'a> {
    pub route: &'a Route,
    pub metrics: &'a RouteMetrics,
    pub principal: Option<&'a Principal>,
    pub ids: Option<&'a RequestIds>,
}

impl PinState {
    /// Whether a listed tool (its name, its item's JSON text) is shown: its definition
    /// is its pin, or the route only warns. Remembers the verdict for the tool's calls.
    pub(super) fn listed_tool(&self, at: &Recorder<'_>, name: &str, item: &str) -> bool {
        let digest = tool_digest(item).ok();
        let verdict = self.pins.verdict(name, digest.as_deref());
        if let Some(changed) = self.changed.get(name) {
            changed.store(verdict != PinVerdict::Matches, Ordering::Relaxed);
        }
        if verdict == PinVerdict::Matches {
            return true;
        }
        let action = match self.pins.on_change {
            OnChange::Hide => HIDDEN,
            OnChange::Warn => WARNED,
        };
        self.record(at, name, verdict, action);
        self.pins.on_change == OnChange::Warn
    }

    /// Under `hide`, refuses a request calling a tool that is not pinned, or whose
    /// listed definition was last seen changed (see the module doc for the race).
    pub(super) fn check_calls(
        &self,
        at: &Recorder<'_>,
        inspected: Option<&Inspected>,
    ) -> Result<(), Refusal> {
        if self.pins.on_change != OnChange::Hide {
            return Ok(());
        }
        let calls = inspected
            .into_iter()
            .flat_map(|i| &i.messages)
            .filter_map(|m| match Operation::of(&m.kind) {
                Operation::Tool(name) => Some(name),
                _ => None,
            });
        for name in calls {
            let verdict = match self.changed.get(name) {
                None => PinVerdict::Unpinned,
                Some(changed) if changed.load(Ordering::Relaxed) => PinVerdict::Changed,
                Some(_) => continue,
            };
            self.record(at, name, verdict, CALL_REFUSED);
            return Err(Refusal::tool_not_pinned(name));
        }
        Ok(())
    }

    fn record(&self, at: &Recorder<'_>, name: &str, verdict: PinVerdict, action: &'static str) {
        let tool = self.pins.label(name);
        at.metrics.tool_pin_mismatch(tool, action);
        audit::emit(
            &AuditEvent::ToolDefinitionChanged {
                route: at.route,
                caller: Caller::of(at.principal),
                tool,
                reason: verdict.reason(),
                action,
            },
            at.ids,
        );
    }
}

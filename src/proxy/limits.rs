//! The rate-limit steps: the route's limit, right after authentication and before the
//! body is read (a refused body is drained, never held or parsed), and the tools' limits,
//! right after authorization (only calls the policy permits count).
//!
//! Owns: which requests count against which limit, a batch's count, and the refusal's
//! metric and audit event. Does not own: the buckets and keys (`ratelimit`), the answer
//! (`refusal`). The limiters belong to the route's runtime state: built with each
//! configuration, so a reload starts every bucket full.

use std::net::IpAddr;

use super::state::RouteRuntime;
use crate::auth::Principal;
use crate::mcp::jsonrpc::Inspected;
use crate::policy::Operation;
use crate::ratelimit::{self, Limiter, Refused, Taken, Who};
use crate::refusal::{Limit, Refusal};
use crate::telemetry::audit::{self, AuditEvent, Caller};
use crate::telemetry::ids::RequestIds;

/// Who the request is, for keys.
fn who(principal: Option<&Principal>, client: Option<IpAddr>) -> Who<'_> {
    Who {
        issuer: principal.map(|p| p.issuer.as_str()),
        subject: principal.map(|p| p.subject.as_str()),
        client_id: principal.and_then(|p| p.client_id.as_deref()),
        address: client,
    }
}

/// The route's limit: every request on the route counts once (a batch is one request;
/// GET streams and DELETE count too), whatever happens to it afterwards.
pub(super) fn check_route_limit(
    rt: &RouteRuntime,
    principal: Option<&Principal>,
    client: Option<IpAddr>,
    ids: Option<&RequestIds>,
) -> Result<(), Refusal> {
    let Some(limiter) = &rt.limits.route else {
        return Ok(());
    };
    let taken = limiter.take(&who(principal, client), 1, ratelimit::now());
    counted(rt, &Limit::Route, &taken);
    match taken {
        Ok(_) => Ok(()),
        Err(refused) => Err(refuse(
            rt,
            Limit::Route,
            limiter,
            refused,
            principal,
            client,
            ids,
        )),
    }
}

/// The tools' limits: each permitted `tools/call` of a tool whose rule has a limit
/// counts against that rule's limit. A batch takes all its calls of one rule at once, and
/// is refused whole if any limit cannot take them; then what it took from the other
/// rules' limits is given back, so a refused request uses up nothing.
pub(super) fn check_tool_limits(
    rt: &RouteRuntime,
    principal: Option<&Principal>,
    client: Option<IpAddr>,
    inspected: Option<&Inspected>,
    ids: Option<&RequestIds>,
) -> Result<(), Refusal> {
    let (Some(policy), Some(inspected)) = (rt.route.policy.as_ref(), inspected) else {
        return Ok(());
    };
    if rt.limits.tools.is_empty() {
        return Ok(());
    }
    // Calls per limited rule, in the order the body first names them.
    let mut calls: Vec<(usize, u32)> = Vec::new();
    for message in &inspected.messages {
        let Operation::Tool(name) = Operation::of(&message.kind) else {
            continue;
        };
        let label = policy.tool_label(name);
        let Some(at) = rt.limits.tools.iter().position(|(l, _)| l == label) else {
            continue;
        };
        match calls.iter_mut().find(|(i, _)| *i == at) {
            Some((_, n)) => *n = n.saturating_add(1),
            None => calls.push((at, 1)),
        }
    }
    let who = who(principal, client);
    let now = ratelimit::now();
    let mut taken: Vec<(&Limiter, Taken)> = Vec::with_capacity(calls.len());
    for (at, n) in calls {
        let Some((label, limiter)) = rt.limits.tools.get(at) else {
            continue;
        };
        let limit = Limit::Tool(label.clone());
        let result = limiter.take(&who, n, now);
        counted(rt, &limit, &result);
        match result {
            Ok(t) => taken.push((limiter, t)),
            Err(refused) => {
                for (limiter, t) in taken {
                    limiter.give_back(t);
                }
                return Err(refuse(rt, limit, limiter, refused, principal, client, ids));
            }
        }
    }
    Ok(())
}

/// Counts a take that found the key map full (the shared overflow bucket judged it).
fn counted(rt: &RouteRuntime, limit: &Limit, result: &Result<Taken, Refused>) {
    let overflowed = match result {
        Ok(taken) => Limiter::overflowed(taken),
        Err(refused) => refused.judged == ratelimit::Judged::Overflow,
    };
    if overflowed {
        rt.metrics.rate_limit_keys_full(limit.label());
    }
}

/// The refusal, its metric and its audit event.
fn refuse(
    rt: &RouteRuntime,
    limit: Limit,
    limiter: &Limiter,
    refused: Refused,
    principal: Option<&Principal>,
    client: Option<IpAddr>,
    ids: Option<&RequestIds>,
) -> Refusal {
    let key = limiter.limit().key;
    let retry_after = refused.wait.retry_after_secs();
    rt.metrics.rate_limited(limit.label(), key.label());
    audit::emit(
        &AuditEvent::RateLimited {
            route: &rt.route,
            caller: Caller::of(principal),
            limit: limit.label(),
            key,
            retry_after,
            client,
        },
        ids,
    );
    Refusal::RateLimited {
        limit,
        key,
        retry_after,
    }
}

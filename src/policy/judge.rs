//! What a policy entry adds to scopes and claims — argument rules ([`arguments`]) and
//! shadow mode — and the judgment that combines them with [`Policy::decide`]. Pure, like
//! the rest of policy; `drawbridge explain` can call [`Policy::judge`] and print its
//! parts.
//!
//! Shadow mode (`mode: shadow` on the route's policy, on a tool, prompt or resource
//! entry, on one argument rule or on one claim rule) evaluates and records but does not
//! refuse: the
//! judgment carries what the shadowed rule *would* have decided ([`Shadowed`]), and the
//! decision enforced is the one without it. A shadowed entry or route also hides
//! nothing from lists (listing and calling never disagree); list filtering records no
//! shadow decisions (they would count items, not calls).
//!
//! [`arguments`]: super::arguments

use serde_json::Value;

use super::arguments::{ArgumentRules, Failure, Outcome, OBJECT_RULE};
use super::{Decision, Grants, Operation, Policy, Rule};
use crate::mcp::arguments::{Holder, Unreadable};

/// The kinds of entry that can carry argument rules and a mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Tools,
    Resources,
    Prompts,
}

impl EntryKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            EntryKind::Tools => "tools",
            EntryKind::Resources => "resources",
            EntryKind::Prompts => "prompts",
        }
    }

    /// Where the arguments of a call judged by such an entry are.
    pub fn holder(&self) -> Holder {
        match self {
            EntryKind::Resources => Holder::Params,
            _ => Holder::Arguments,
        }
    }
}

/// One entry's argument rules and mode.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryRules {
    pub arguments: ArgumentRules,
    /// `mode: shadow` on the entry.
    pub shadow: bool,
}

/// Every entry's argument rules and mode, by kind and pattern (the rule that decides an
/// operation names its entry).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallRules {
    entries: Vec<(EntryKind, String, EntryRules)>,
}

impl CallRules {
    pub fn insert(&mut self, kind: EntryKind, pattern: &str, rules: EntryRules) {
        if rules != EntryRules::default() {
            self.entries.push((kind, pattern.to_string(), rules));
        }
    }

    pub fn get(&self, kind: EntryKind, pattern: &str) -> Option<&EntryRules> {
        self.entries
            .iter()
            .find(|(k, p, _)| *k == kind && p == pattern)
            .map(|(_, _, r)| r)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A decision a shadowed rule would have made. `rule` is the metric label: `policy`
/// (the route's), `tools:read_file` (an entry) or `tools:read_file:arguments:/path`
/// (one argument rule); bounded by the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shadowed {
    pub rule: String,
    pub decision: Decision,
}

/// One operation's judgment: the decision enforced and the shadow decisions recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgment {
    pub decision: Decision,
    pub shadowed: Vec<Shadowed>,
    /// Every argument rule's outcome (for `explain`), empty when none ran.
    pub arguments: Vec<Outcome>,
}

/// Where a call's arguments come from: message `index` of the request, read strictly.
pub type ArgumentSource<'s> = dyn Fn(usize, Holder) -> Result<Option<&'s Value>, Unreadable> + 's;

impl Policy {
    /// The entry deciding `op` and its argument rules and mode, if it has any.
    pub fn entry_rules(&self, op: Operation<'_>) -> Option<(EntryKind, &str, &EntryRules)> {
        let kind = match op {
            Operation::Tool(_) => EntryKind::Tools,
            Operation::Prompt(_) => EntryKind::Prompts,
            Operation::Resource { .. } => EntryKind::Resources,
            _ => return None,
        };
        let (_, rule) = self.deciding_rule(op)?;
        let pattern = rule.glob.as_str();
        Some((kind, pattern, self.call_rules.get(kind, pattern)?))
    }

    /// The rule that decides `op` and its kind's key (`tools`, …, `methods`), if any.
    fn deciding_rule(&self, op: Operation<'_>) -> Option<(&'static str, &Rule)> {
        let (kind, set, name) = match op {
            Operation::Tool(n) => ("tools", &self.tools, n),
            Operation::Prompt(n) => ("prompts", &self.prompts, n),
            Operation::Resource { uri, .. } => ("resources", &self.resources, uri),
            Operation::Method(m) => ("methods", &self.methods, m),
            Operation::Response | Operation::Request => return None,
        };
        Some((kind, set.find(name)?))
    }

    /// Claim rules in shadow mode that apply to `op`: the route's `require`
    /// (`require:claims:tid`) and the deciding rule's (`tools:deploy:claims:groups`).
    fn shadow_claims(&self, granted: &(impl Grants + ?Sized), op: Operation<'_>) -> Vec<Shadowed> {
        let required = self.require.iter().map(|r| ("require".to_string(), r));
        let own = self.deciding_rule(op).into_iter().flat_map(|(kind, rule)| {
            let at = format!("{kind}:{}", rule.glob.as_str());
            rule.claims.iter().map(move |r| (at.clone(), r))
        });
        required
            .chain(own)
            .filter(|(_, r)| r.shadow)
            .map(|(at, r)| Shadowed {
                rule: format!("{at}:{}", r.label()),
                decision: if r.holds(granted.claims()) {
                    Decision::Allow { scopes: Vec::new() }
                } else {
                    Decision::ClaimsFailed { rule: r.label() }
                },
            })
            .collect()
    }

    /// Decides one operation (message `index` of the request) with everything: scopes
    /// and claims ([`Policy::decide`]), then the argument rules of the entry that
    /// permitted it, then shadow mode.
    pub fn judge(
        &self,
        granted: &(impl Grants + ?Sized),
        op: Operation<'_>,
        index: usize,
        arguments: &ArgumentSource<'_>,
    ) -> Judgment {
        let mut judgment = Judgment {
            decision: self.decide(granted, op),
            shadowed: self.shadow_claims(granted, op),
            arguments: Vec::new(),
        };
        if let Some((kind, pattern, entry)) = self.entry_rules(op) {
            let entry_label = format!("{}:{pattern}", kind.as_str());
            if judgment.decision.is_allow() && !entry.arguments.is_empty() {
                judgment.arguments = match arguments(index, kind.holder()) {
                    Ok(value) => entry.arguments.evaluate(value),
                    Err(why) => vec![unreadable(why)],
                };
                for o in judgment.arguments.iter().filter(|o| o.shadow) {
                    judgment.shadowed.push(Shadowed {
                        rule: format!("{entry_label}:{}", o.rule),
                        decision: argument_decision(o),
                    });
                }
                if let Some(failed) = ArgumentRules::first_failure(&judgment.arguments) {
                    judgment.decision = argument_decision(failed);
                }
            }
            if entry.shadow {
                self.shadow_out(&mut judgment, entry_label, granted, op);
            }
        }
        if self.shadow {
            self.shadow_out(&mut judgment, "policy".to_string(), granted, op);
        }
        judgment
    }

    /// Records the decision as a shadow one and enforces an allow in its place, with the
    /// scopes the operation needs that the caller holds (for downscoping).
    fn shadow_out(
        &self,
        judgment: &mut Judgment,
        rule: String,
        granted: &(impl Grants + ?Sized),
        op: Operation<'_>,
    ) {
        let would = judgment.decision.clone();
        if !would.is_allow() {
            let scopes = self
                .needs(op)
                .map(|n| {
                    n.scopes
                        .iter()
                        .filter(|s| granted.scopes().contains(s))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            judgment.decision = Decision::Allow { scopes };
        }
        judgment.shadowed.push(Shadowed {
            rule,
            decision: would,
        });
    }

    /// Is `op` under a shadowed entry (or the route's shadow mode)? Then lists show it.
    pub(super) fn shadowed(&self, op: Operation<'_>) -> bool {
        self.shadow || self.entry_rules(op).is_some_and(|(_, _, e)| e.shadow)
    }
}

fn unreadable(why: Unreadable) -> Outcome {
    Outcome {
        rule: OBJECT_RULE.to_string(),
        result: Err(match why {
            Unreadable::Body => Failure::Unreadable,
            Unreadable::Spelling => Failure::Spelling,
        }),
        shadow: false,
    }
}

fn argument_decision(outcome: &Outcome) -> Decision {
    match outcome.result {
        Ok(()) => Decision::Allow { scopes: Vec::new() },
        Err(failure) => Decision::ArgumentsFailed {
            rule: outcome.rule.clone(),
            reason: failure.reason(),
        },
    }
}

#[cfg(test)]
#[path = "judge_tests.rs"]
mod tests;

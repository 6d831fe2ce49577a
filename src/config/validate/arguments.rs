//! Argument rules and modes in the configuration: `arguments`, `additional_arguments`
//! and `mode` of a policy entry, and the policy's own `mode` (see `policy::judge`).

use std::collections::BTreeMap;

use super::Checker;
use crate::config::raw::{RawArgumentRule, RawRule};
use crate::policy::arguments::{ArgumentName, ArgumentRule, ArgumentRules, Condition, Presence};
use crate::policy::{CallRules, EntryKind, EntryRules, Glob};

/// Members of a resource method's `params` never counted as additional arguments: the
/// URI and the protocol's own members.
const RESOURCE_EXEMPT: &[&str] = &["uri", "_meta", "requestState", "taskId"];

impl Checker<'_> {
    /// `mode: enforce | shadow`; true for shadow.
    pub(super) fn mode(&mut self, at: &str, mode: Option<&str>) -> bool {
        match mode {
            None | Some("enforce") => false,
            Some("shadow") => true,
            Some(_) => {
                self.error(at, "must be `enforce` or `shadow`");
                false
            }
        }
    }

    /// The argument rules and modes of the entries of `kind` (`tools`, …). `methods`
    /// entries take none.
    pub(super) fn call_rules(
        &mut self,
        at: &str,
        kind: &str,
        map: &BTreeMap<String, RawRule>,
        into: &mut CallRules,
    ) {
        let entry_kind = match kind {
            "tools" => Some(EntryKind::Tools),
            "prompts" => Some(EntryKind::Prompts),
            "resources" => Some(EntryKind::Resources),
            _ => None,
        };
        for (pattern, rule) in map {
            let RawRule::Full(full) = rule else {
                continue;
            };
            let path = format!("{at}.{kind}.{pattern}");
            let Some(entry_kind) = entry_kind else {
                if !full.arguments.is_empty()
                    || full.additional_arguments.is_some()
                    || full.mode.is_some()
                {
                    self.error(
                        &path,
                        "`arguments`, `additional_arguments` and `mode` apply to tools, prompts and resources",
                    );
                }
                continue;
            };
            let shadow = self.mode(&format!("{path}.mode"), full.mode.as_deref());
            let deny_additional = match full.additional_arguments.as_deref() {
                None | Some("allow") => false,
                Some("deny") => true,
                Some(_) => {
                    self.error(
                        &format!("{path}.additional_arguments"),
                        "must be `allow` or `deny`",
                    );
                    false
                }
            };
            let rules = full
                .arguments
                .iter()
                .filter_map(|(name, raw)| {
                    self.argument_rule(&format!("{path}.arguments.{name}"), name, raw)
                })
                .collect();
            let exempt: &'static [&'static str] = match entry_kind {
                EntryKind::Resources => RESOURCE_EXEMPT,
                _ => &[],
            };
            into.insert(
                entry_kind,
                pattern,
                EntryRules {
                    arguments: ArgumentRules {
                        rules,
                        deny_additional,
                        exempt,
                    },
                    shadow,
                },
            );
        }
    }

    fn argument_rule(
        &mut self,
        at: &str,
        name: &str,
        raw: &RawArgumentRule,
    ) -> Option<ArgumentRule> {
        let name = match ArgumentName::parse(name) {
            Ok(name) => name,
            Err(why) => {
                self.error(at, why);
                return None;
            }
        };
        let shadow = self.mode(&format!("{at}.mode"), raw.mode.as_deref());
        let mut conditions = self.conditions(at, raw);
        if let Some(each) = &raw.each {
            let at_each = format!("{at}.each");
            if each.present.is_some()
                || each.optional.is_some()
                || each.mode.is_some()
                || each.each.is_some()
            {
                self.error(
                    &at_each,
                    "`each` takes conditions only (glob, prefix, one_of, max_length, min, max, regex)",
                );
            }
            let items = self.conditions(&at_each, each);
            if items.is_empty() {
                self.error(&at_each, "`each` needs a condition on the items");
            }
            let array_only = raw.glob.is_some()
                || raw.one_of.is_some()
                || raw.prefix.is_some()
                || raw.regex.is_some()
                || raw.min.is_some()
                || raw.max.is_some();
            if array_only {
                self.error(
                    at,
                    "`each` needs an array: glob, prefix, one_of, regex, min and max beside it can never hold",
                );
            }
            // First, so that a value that is not an array reads as of the wrong type.
            conditions.insert(0, Condition::Each(items));
        }
        let presence = self.presence(at, raw, &conditions);
        Some(ArgumentRule {
            name,
            presence,
            conditions,
            shadow,
        })
    }

    /// The value conditions of a rule (or of its `each`).
    fn conditions(&mut self, at: &str, raw: &RawArgumentRule) -> Vec<Condition> {
        let mut conditions = Vec::new();
        if let Some(glob) = &raw.glob {
            if glob.is_empty() {
                self.error(
                    &format!("{at}.glob"),
                    "an empty pattern matches only an empty value",
                );
            }
            conditions.push(Condition::Glob(Glob::new(glob)));
        }
        if let Some(prefix) = &raw.prefix {
            if prefix.is_empty() {
                self.error(
                    &format!("{at}.prefix"),
                    "an empty prefix allows every string",
                );
            }
            conditions.push(Condition::Prefix(prefix.clone()));
        }
        if let Some(pattern) = &raw.regex {
            match Condition::regex(pattern) {
                Ok(c) => conditions.push(c),
                Err(why) => self.error(&format!("{at}.regex"), why),
            }
        }
        if let Some(values) = &raw.one_of {
            match one_of(values) {
                Ok(values) => conditions.push(Condition::OneOf(values)),
                Err(why) => self.error(&format!("{at}.one_of"), why),
            }
        }
        if let Some(n) = raw.max_length {
            conditions.push(Condition::MaxLength(
                usize::try_from(n).unwrap_or(usize::MAX),
            ));
        }
        for (key, bound) in [("min", raw.min), ("max", raw.max)] {
            let Some(bound) = bound else { continue };
            if !bound.is_finite() {
                self.error(&format!("{at}.{key}"), "must be a finite number");
                continue;
            }
            conditions.push(if key == "min" {
                Condition::Min(bound)
            } else {
                Condition::Max(bound)
            });
        }
        if let (Some(min), Some(max)) = (raw.min, raw.max) {
            if min > max {
                self.error(at, "`min` is above `max`: no value can satisfy the rule");
            }
        }
        let textual = raw.glob.is_some() || raw.prefix.is_some() || raw.regex.is_some();
        let numeric = raw.min.is_some() || raw.max.is_some();
        if textual && numeric {
            self.error(
                at,
                "string conditions (glob, prefix, regex) and number conditions (min, max) can never both hold",
            );
        }
        conditions
    }

    /// Whether the rule's argument must be there, and whether the rule says anything.
    fn presence(&mut self, at: &str, raw: &RawArgumentRule, conditions: &[Condition]) -> Presence {
        let presence = match (raw.present, raw.optional) {
            (Some(false), Some(true)) | (Some(true), Some(true)) => {
                self.error(at, "say `present` or `optional: true`, not both");
                Presence::Required
            }
            (Some(false), _) => {
                if !conditions.is_empty() {
                    self.error(
                        at,
                        "`present: false` (must be absent) takes no other condition",
                    );
                }
                Presence::Absent
            }
            (_, Some(true)) => Presence::Optional,
            _ => Presence::Required,
        };
        if conditions.is_empty() && presence != Presence::Absent && raw.present != Some(true) {
            self.error(
                at,
                "a rule needs a condition (glob, prefix, one_of, max_length, min, max, regex, each) or `present`",
            );
        }
        presence
    }
}

/// `one_of`: a non-empty list of strings, numbers and booleans.
fn one_of(values: &[serde_yaml::Value]) -> Result<Vec<serde_json::Value>, &'static str> {
    if values.is_empty() {
        return Err("list at least one value: an empty list can never be satisfied");
    }
    values
        .iter()
        .map(|v| match v {
            serde_yaml::Value::String(s) => Ok(serde_json::Value::String(s.clone())),
            serde_yaml::Value::Bool(b) => Ok(serde_json::Value::Bool(*b)),
            serde_yaml::Value::Number(n) => {
                let n = if let Some(i) = n.as_i64() {
                    serde_json::Number::from(i)
                } else if let Some(u) = n.as_u64() {
                    serde_json::Number::from(u)
                } else {
                    n.as_f64()
                        .and_then(serde_json::Number::from_f64)
                        .ok_or("a number must be finite")?
                };
                Ok(serde_json::Value::Number(n))
            }
            _ => Err("values are strings, numbers or booleans"),
        })
        .collect()
}

#[cfg(test)]
#[path = "arguments_tests.rs"]
mod tests;

//! Claims as policy reads them: a claim named by the configuration ([`ClaimName`]: a
//! member of the token's claims, or a JSON pointer to a nested one), the values a caller
//! holds for it ([`ClaimSet`]), and the condition a claim rule sets ([`ClaimRule`]).
//!
//! A claim counts only as a string (one value) or an array of strings (its members).
//! Anything else — a number, an object, an array with a non-string member — holds no
//! value, so a rule on it fails: a token shaped differently from what the operator
//! expected is refused rather than guessed at.

use serde_json::Value;

/// A claim named in `gateway.yaml`: `groups` (a top-level member, by its exact name) or
/// an RFC 6901 JSON pointer such as `/realm_access/roles` or
/// `/resource_access/my-client/roles` for a nested member.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClaimName(String);

impl ClaimName {
    /// Checks a name as written. A pointer's `~` must start `~0` or `~1`.
    pub fn parse(text: &str) -> Result<ClaimName, &'static str> {
        if text.is_empty() {
            return Err("a claim name must not be empty");
        }
        if text.starts_with('/') {
            let mut chars = text.chars();
            while let Some(c) = chars.next() {
                if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
                    return Err("in a JSON pointer, `~` must be followed by 0 or 1 (RFC 6901)");
                }
            }
            if text.split('/').skip(1).any(str::is_empty) {
                return Err("a JSON pointer names no empty member (`//` or a trailing `/`)");
            }
        }
        Ok(ClaimName(text.to_string()))
    }

    /// A well-known top-level claim, named in the code (`sub`, `client_id`).
    pub(crate) fn known(name: &'static str) -> ClaimName {
        ClaimName(name.to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The claim's value in a token's claims (a JSON object), if present.
    pub fn find<'v>(&self, claims: &'v Value) -> Option<&'v Value> {
        if self.0.starts_with('/') {
            claims.pointer(&self.0)
        } else {
            claims.get(&self.0)
        }
    }
}

impl std::fmt::Display for ClaimName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A claim's values: a string is one value, an array of strings its members; `None` for
/// any other JSON value.
pub fn string_values(value: &Value) -> Option<Vec<String>> {
    match value {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => None,
    }
}

/// The claims a caller carries for claim rules: only those the configuration's rules
/// name (computed once per configuration), so a principal never holds a whole token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimSet(Vec<(ClaimName, Vec<String>)>);

impl ClaimSet {
    pub const EMPTY: ClaimSet = ClaimSet(Vec::new());

    /// The values of each of `names` in `claims`; absent and ill-typed claims are left
    /// out (a rule on them fails).
    pub fn collect(names: &[ClaimName], claims: &Value) -> ClaimSet {
        ClaimSet(
            names
                .iter()
                .filter_map(|name| {
                    let values = string_values(name.find(claims)?)?;
                    Some((name.clone(), values))
                })
                .collect(),
        )
    }

    pub fn get(&self, name: &ClaimName) -> Option<&[String]> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Each claim held and its values.
    pub fn iter(&self) -> impl Iterator<Item = (&ClaimName, &[String])> {
        self.0.iter().map(|(n, v)| (n, v.as_slice()))
    }
}

/// One condition of a claim rule: the claim must hold at least one of `values`
/// (exact, case-sensitive comparison). A rule in shadow mode (`mode: shadow`) is
/// evaluated and recorded (see `policy::judge`) but never fails a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRule {
    pub claim: ClaimName,
    pub values: Vec<String>,
    pub shadow: bool,
}

impl ClaimRule {
    pub fn holds(&self, held: &ClaimSet) -> bool {
        held.get(&self.claim)
            .is_some_and(|have| have.iter().any(|v| self.values.contains(v)))
    }

    /// The audit label of a failed rule: `claims:groups`.
    pub fn label(&self) -> String {
        format!("claims:{}", self.claim)
    }
}

/// The first enforced rule of `rules` that `held` does not satisfy (every rule must
/// hold; rules in shadow mode are left to `policy::judge`).
pub fn first_failing<'r>(rules: &'r [ClaimRule], held: &ClaimSet) -> Option<&'r ClaimRule> {
    rules.iter().find(|r| !r.shadow && !r.holds(held))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn name(s: &str) -> ClaimName {
        ClaimName::parse(s).unwrap()
    }

    #[test]
    fn names_and_pointers_find_their_members() {
        let claims = json!({
            "groups": ["sre", "dev"],
            "tid": "3f0c",
            "realm_access": {"roles": ["admin"]},
            "resource_access": {"my-client": {"roles": ["deployer"]}},
            "a/b": "slash",
            "x": {"a/b": "escaped"},
        });
        assert_eq!(name("tid").find(&claims), Some(&json!("3f0c")));
        assert_eq!(name("a/b").find(&claims), Some(&json!("slash")));
        assert_eq!(
            name("/realm_access/roles").find(&claims),
            Some(&json!(["admin"]))
        );
        assert_eq!(
            name("/resource_access/my-client/roles").find(&claims),
            Some(&json!(["deployer"]))
        );
        assert_eq!(name("/x/a~1b").find(&claims), Some(&json!("escaped")));
        assert_eq!(name("/realm_access/missing").find(&claims), None);
        assert_eq!(name("missing").find(&claims), None);
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in ["", "/a~2b", "/a~", "//a", "/a/"] {
            assert!(ClaimName::parse(bad).is_err(), "{bad}");
        }
    }

    /// Only strings and arrays of strings hold values; anything else holds none, so a
    /// rule on it fails closed.
    #[test]
    fn only_strings_and_string_arrays_hold_values() {
        assert_eq!(string_values(&json!("a b")), Some(vec!["a b".to_string()]));
        assert_eq!(
            string_values(&json!(["a", "b"])),
            Some(vec!["a".to_string(), "b".to_string()])
        );
        assert_eq!(string_values(&json!([])), Some(vec![]));
        for bad in [
            json!(1),
            json!(true),
            json!({"a": "b"}),
            json!(["a", 1]),
            json!(null),
        ] {
            assert_eq!(string_values(&bad), None, "{bad}");
        }
    }

    #[test]
    fn rules_need_one_listed_value_of_a_well_typed_claim() {
        let names = [
            name("groups"),
            name("tid"),
            name("/realm_access/roles"),
            name("n"),
        ];
        let held = ClaimSet::collect(
            &names,
            &json!({"groups": ["sre", "dev"], "tid": "t1", "realm_access": {"roles": "admin"}, "n": [1], "other": "x"}),
        );
        let rule = |c: &str, v: &[&str]| ClaimRule {
            claim: name(c),
            values: v.iter().map(|s| s.to_string()).collect(),
            shadow: false,
        };
        assert!(rule("groups", &["platform", "sre"]).holds(&held));
        assert!(!rule("groups", &["SRE"]).holds(&held), "case-sensitive");
        assert!(rule("tid", &["t1"]).holds(&held));
        assert!(rule("/realm_access/roles", &["admin"]).holds(&held));
        assert!(
            !rule("n", &["1"]).holds(&held),
            "ill-typed claim holds nothing"
        );
        assert!(
            !rule("other", &["x"]).holds(&held),
            "not collected: not named"
        );
        let rules = [rule("tid", &["t1"]), rule("groups", &["ops"])];
        assert_eq!(
            first_failing(&rules, &held).map(ClaimRule::label),
            Some("claims:groups".into())
        );
        assert_eq!(first_failing(&rules[..1], &held), None);
        let shadowed = [ClaimRule {
            shadow: true,
            ..rule("groups", &["ops"])
        }];
        assert_eq!(
            first_failing(&shadowed, &held),
            None,
            "shadow rules never fail"
        );
        assert_eq!(held.get(&name("other")), None);
    }
}

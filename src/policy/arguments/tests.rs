use super::*;
use serde_json::json;

fn name(s: &str) -> ArgumentName {
    ArgumentName::parse(s).unwrap()
}

fn rule(n: &str, conditions: Vec<Condition>) -> ArgumentRule {
    ArgumentRule {
        name: name(n),
        presence: Presence::Required,
        conditions,
        shadow: false,
    }
}

fn rules(list: Vec<ArgumentRule>, deny_additional: bool) -> ArgumentRules {
    ArgumentRules {
        rules: list,
        deny_additional,
        exempt: &[],
    }
}

/// The first enforced failure's rule and failure, or `None` when every rule holds.
fn verdict(r: &ArgumentRules, args: serde_json::Value) -> Option<(String, Failure)> {
    let outcomes = r.evaluate(Some(&args));
    ArgumentRules::first_failure(&outcomes).map(|o| (o.rule.clone(), o.result.unwrap_err()))
}

fn read_file() -> ArgumentRules {
    rules(
        vec![
            rule("path", vec![Condition::Glob(Glob::new("/srv/data/**"))]),
            rule(
                "mode",
                vec![Condition::OneOf(vec![json!("text"), json!("base64")])],
            ),
        ],
        true,
    )
}

#[test]
fn names_and_pointers() {
    assert_eq!(name("path").label(), "arguments:/path");
    assert_eq!(name("a/b").label(), "arguments:/a~1b");
    assert_eq!(name("/options/depth").label(), "arguments:/options/depth");
    assert_eq!(name("/x/a~1b~0c").segments, vec!["x", "a/b~c"]);
    assert_eq!(name("/options/depth").first(), "options");
    for bad in ["", "/a~2", "/a~", "//a", "/a/"] {
        assert!(ArgumentName::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn every_listed_argument_must_satisfy_its_rule() {
    let r = read_file();
    assert_eq!(
        verdict(&r, json!({"path": "/srv/data/a/b.txt", "mode": "text"})),
        None
    );
    assert_eq!(
        verdict(&r, json!({"path": "/etc/passwd", "mode": "text"})),
        Some(("arguments:/path".into(), Failure::Condition("glob")))
    );
    assert_eq!(
        verdict(&r, json!({"path": "/srv/data/a", "mode": "binary"})),
        Some(("arguments:/mode".into(), Failure::Condition("one_of")))
    );
    assert_eq!(
        verdict(&r, json!({"mode": "text"})),
        Some(("arguments:/path".into(), Failure::Missing)),
        "a named argument is required by default"
    );
    assert_eq!(
        verdict(
            &r,
            json!({"path": "/srv/data/a", "mode": "text", "extra": 1})
        ),
        Some(("additional_arguments".into(), Failure::Unlisted))
    );
    let mut allow_extra = read_file();
    allow_extra.deny_additional = false;
    assert_eq!(
        verdict(
            &allow_extra,
            json!({"path": "/srv/data/a", "mode": "text", "extra": 1})
        ),
        None
    );
}

/// A value of the wrong type fails the rule: `null` is no string, `"5"` no number.
#[test]
fn wrong_types_fail() {
    let r = read_file();
    for bad in [
        json!(null),
        json!(5),
        json!(["/srv/data/a"]),
        json!({"p": "/srv/data/a"}),
        json!(true),
    ] {
        assert_eq!(
            verdict(&r, json!({"path": bad.clone(), "mode": "text"})),
            Some(("arguments:/path".into(), Failure::WrongType)),
            "{bad}"
        );
    }
    let n = rules(vec![rule("n", vec![Condition::Max(10.0)])], false);
    assert_eq!(
        verdict(&n, json!({"n": "5"})),
        Some(("arguments:/n".into(), Failure::WrongType))
    );
    assert_eq!(
        verdict(&read_file(), json!("not an object")),
        Some(("arguments".into(), Failure::NotAnObject))
    );
    assert_eq!(
        verdict(&read_file(), json!([1])),
        Some(("arguments".into(), Failure::NotAnObject))
    );
}

/// Paths are not normalized: any `..` segment fails, however it is spelled.
#[test]
fn dot_segments_and_nul_fail_glob_and_prefix() {
    let r = read_file();
    for bad in [
        "/srv/data/../etc/passwd",
        "/srv/data/..",
        "/srv/data/a/../../etc",
        "/srv/data/..\\..\\etc",
        "/srv/data/%2e%2e/etc/passwd",
        "/srv/data/%2E./etc",
        "/srv/data/..%2fetc",
        "/srv/data/\u{2025}/etc",
        "/srv/data/\u{2024}\u{2024}/etc",
        "/srv/data/\u{FF0E}\u{FF0E}\u{FF0F}etc",
    ] {
        assert_eq!(
            verdict(&r, json!({"path": bad, "mode": "text"})),
            Some(("arguments:/path".into(), Failure::DotSegment)),
            "{bad}"
        );
    }
    assert_eq!(
        verdict(&r, json!({"path": "/srv/data/a\u{0}.txt", "mode": "text"})),
        Some(("arguments:/path".into(), Failure::Nul))
    );
    // Single dots and dots inside names are fine.
    for ok in [
        "/srv/data/./a",
        "/srv/data/a..b",
        "/srv/data/...",
        "/srv/data/.hidden",
    ] {
        assert_eq!(
            verdict(&r, json!({"path": ok, "mode": "text"})),
            None,
            "{ok}"
        );
    }
    let p = rules(
        vec![rule("p", vec![Condition::Prefix("/srv/".into())])],
        false,
    );
    assert_eq!(verdict(&p, json!({"p": "/srv/x"})), None);
    assert_eq!(
        verdict(&p, json!({"p": "/srv/../etc"})),
        Some(("arguments:/p".into(), Failure::DotSegment))
    );
    assert_eq!(
        verdict(&p, json!({"p": "/srvx"})),
        Some(("arguments:/p".into(), Failure::Condition("prefix")))
    );
}

/// No Unicode normalization: a value matches only as the code points it is.
#[test]
fn values_are_compared_as_written() {
    let r = rules(
        vec![rule("p", vec![Condition::Glob(Glob::new("/caf\u{e9}/*"))])],
        false,
    );
    assert_eq!(verdict(&r, json!({"p": "/caf\u{e9}/x"})), None);
    assert_eq!(
        verdict(&r, json!({"p": "/cafe\u{301}/x"})),
        Some(("arguments:/p".into(), Failure::Condition("glob")))
    );
}

#[test]
fn nested_members_by_pointer() {
    let r = rules(
        vec![
            rule(
                "/options/depth",
                vec![Condition::Min(0.0), Condition::Max(3.0)],
            ),
            rule("/items/0", vec![Condition::MaxLength(3)]),
        ],
        false,
    );
    assert_eq!(
        verdict(&r, json!({"options": {"depth": 2}, "items": ["abc"]})),
        None
    );
    assert_eq!(
        verdict(&r, json!({"options": {"depth": 4}, "items": ["abc"]})),
        Some(("arguments:/options/depth".into(), Failure::Condition("max")))
    );
    assert_eq!(
        verdict(&r, json!({"options": {"depth": -1}, "items": ["abc"]})),
        Some(("arguments:/options/depth".into(), Failure::Condition("min")))
    );
    assert_eq!(
        verdict(&r, json!({"options": {}, "items": ["abc"]})),
        Some(("arguments:/options/depth".into(), Failure::Missing))
    );
    assert_eq!(
        verdict(&r, json!({"options": "deep", "items": ["abc"]})),
        Some(("arguments:/options/depth".into(), Failure::WrongType)),
        "a path through a non-object fails"
    );
    assert_eq!(
        verdict(&r, json!({"options": {"depth": 1}, "items": ["abcd"]})),
        Some((
            "arguments:/items/0".into(),
            Failure::Condition("max_length")
        ))
    );
}

/// An upstream that matches keys case-insensitively (Go's encoding/json, last one
/// wins) would read `PATH` in place of `path`.
#[test]
fn a_second_spelling_fails_at_any_depth() {
    let r = rules(
        vec![
            rule("path", vec![Condition::Prefix("/srv/".into())]),
            rule("/o/depth", vec![Condition::Max(3.0)]),
        ],
        false,
    );
    assert_eq!(
        verdict(
            &r,
            json!({"path": "/srv/a", "PATH": "/etc", "o": {"depth": 1}})
        ),
        Some(("arguments:/path".into(), Failure::Spelling))
    );
    assert_eq!(
        verdict(
            &r,
            json!({"path": "/srv/a", "o": {"depth": 1, "Depth": 99}})
        ),
        Some(("arguments:/o/depth".into(), Failure::Spelling))
    );
    assert_eq!(
        verdict(
            &r,
            json!({"path": "/srv/a", "o": {"depth": 1}, "\u{17F}ome": 1})
        ),
        None,
        "unrelated keys are fine"
    );
}

#[test]
fn a_prototype_member_anywhere_fails() {
    let mut r = read_file();
    r.deny_additional = false;
    for args in [
        json!({"path": "/srv/data/a", "mode": "text", "__proto__": {"path": "/etc"}}),
        json!({"path": "/srv/data/a", "mode": "text", "x": [{"__proto__": {}}]}),
    ] {
        assert_eq!(
            verdict(&r, args.clone()),
            Some(("arguments".into(), Failure::Prototype)),
            "{args}"
        );
    }
}

#[test]
fn presence() {
    let mut optional = rule("p", vec![Condition::MaxLength(2)]);
    optional.presence = Presence::Optional;
    let mut absent = rule("debug", vec![]);
    absent.presence = Presence::Absent;
    let r = rules(vec![optional, absent], false);
    assert_eq!(verdict(&r, json!({})), None);
    assert_eq!(verdict(&r, json!({"p": "ab"})), None);
    assert_eq!(
        verdict(&r, json!({"p": "abc"})),
        Some(("arguments:/p".into(), Failure::Condition("max_length")))
    );
    assert_eq!(
        verdict(&r, json!({"p": null})),
        Some(("arguments:/p".into(), Failure::WrongType)),
        "null is present, of the wrong type"
    );
    assert_eq!(
        verdict(&r, json!({"debug": false})),
        Some(("arguments:/debug".into(), Failure::Present))
    );
    // No arguments at all read as an empty object.
    let outcomes = r.evaluate(None);
    assert!(ArgumentRules::first_failure(&outcomes).is_none());
    let outcomes = read_file().evaluate(None);
    assert_eq!(
        ArgumentRules::first_failure(&outcomes).map(|o| o.result),
        Some(Err(Failure::Missing))
    );
}

/// Numbers are compared as doubles; `-0` is zero; integers a double cannot hold exactly
/// fail rather than round.
#[test]
fn numbers() {
    let r = rules(
        vec![rule("n", vec![Condition::Min(0.0), Condition::Max(10.0)])],
        false,
    );
    let parse = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap();
    for ok in ["0", "-0", "10", "9.5", "1e1", "0.0"] {
        assert_eq!(verdict(&r, json!({"n": parse(ok)})), None, "{ok}");
    }
    for bad in ["10.000001", "-1", "11", "1e2"] {
        assert!(verdict(&r, json!({"n": parse(bad)})).is_some(), "{bad}");
    }
    let huge = rules(vec![rule("n", vec![Condition::Min(0.0)])], false);
    assert_eq!(
        verdict(&huge, json!({"n": parse("9007199254740993")})),
        Some(("arguments:/n".into(), Failure::Condition("min")))
    );
    assert_eq!(
        verdict(&huge, json!({"n": parse("9007199254740992")})),
        None
    );
    let one_of = rules(
        vec![rule(
            "n",
            vec![Condition::OneOf(vec![json!(1), json!("1"), json!(true)])],
        )],
        false,
    );
    assert_eq!(
        verdict(&one_of, json!({"n": parse("1.0")})),
        None,
        "by value"
    );
    assert_eq!(verdict(&one_of, json!({"n": "1"})), None);
    assert_eq!(verdict(&one_of, json!({"n": true})), None);
    assert!(verdict(&one_of, json!({"n": 2})).is_some());
    assert!(verdict(&one_of, json!({"n": null})).is_some());
}

#[test]
fn regex_matches_the_whole_value_and_is_bounded() {
    let Ok(re) = Condition::regex("[a-z]+") else {
        panic!("valid regex refused")
    };
    let r = rules(vec![rule("q", vec![re])], false);
    assert_eq!(verdict(&r, json!({"q": "select"})), None);
    assert_eq!(
        verdict(&r, json!({"q": "select; drop table x"})),
        Some(("arguments:/q".into(), Failure::Condition("regex"))),
        "anchored: a partial match is no match"
    );
    assert_eq!(
        verdict(&r, json!({"q": "a".repeat(MAX_REGEX_INPUT + 1)})),
        Some(("arguments:/q".into(), Failure::TooLong))
    );
    // Alternation is anchored as a whole, not just its last branch.
    let Ok(alt) = Condition::regex("a|b") else {
        panic!("valid regex refused")
    };
    let r = rules(vec![rule("q", vec![alt])], false);
    assert!(verdict(&r, json!({"q": "ax"})).is_some());
    assert!(Condition::regex(&"a".repeat(MAX_REGEX_PATTERN + 1)).is_err());
    assert!(Condition::regex("(").is_err());
    assert!(
        Condition::regex("\\w{1000}{1000}").is_err(),
        "compiles too big"
    );
}

#[test]
fn shadow_rules_are_evaluated_but_never_the_first_failure() {
    let mut shadowed = rule("path", vec![Condition::Prefix("/srv/".into())]);
    shadowed.shadow = true;
    let r = rules(vec![shadowed], false);
    let outcomes = r.evaluate(Some(&json!({"path": "/etc"})));
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].result, Err(Failure::Condition("prefix")));
    assert!(outcomes[0].shadow);
    assert!(ArgumentRules::first_failure(&outcomes).is_none());
}

#[test]
fn refusals_name_the_argument_never_the_value() {
    assert_eq!(
        describe("arguments:/path", Failure::DotSegment.reason()),
        "argument `/path` contains a `..` segment"
    );
    assert_eq!(
        describe("additional_arguments", Failure::Unlisted.reason()),
        "an argument is not allowed by the policy"
    );
    assert_eq!(
        describe("arguments", Failure::NotAnObject.reason()),
        "its `arguments` is not an object"
    );
}

/// `each` judges every item of an array: `read_multiple_files(paths)` is held to the
/// same pattern as `read_file(path)`, item by item, and fails closed on anything else.
#[test]
fn each_judges_every_item_of_an_array() {
    let r = rules(
        vec![rule(
            "paths",
            vec![
                Condition::MaxLength(3),
                Condition::Each(vec![Condition::Glob(Glob::new("/srv/data/**"))]),
            ],
        )],
        false,
    );
    assert_eq!(
        verdict(&r, json!({"paths": ["/srv/data/a", "/srv/data/b/c"]})),
        None
    );
    assert_eq!(verdict(&r, json!({"paths": []})), None);
    let fails = |args| verdict(&r, args).map(|(rule, f)| (rule, f.reason()));
    assert_eq!(
        fails(json!({"paths": ["/srv/data/a", "/etc/shadow"]})),
        Some((
            "arguments:/paths".into(),
            "has an item that does not match the allowed pattern"
        ))
    );
    assert_eq!(
        fails(json!({"paths": ["/srv/data/../../etc/shadow"]})),
        Some(("arguments:/paths".into(), "has an item with a `..` segment"))
    );
    assert_eq!(
        fails(json!({"paths": ["/srv/data/a", ["/srv/data/b"]]})),
        Some(("arguments:/paths".into(), "has an item of the wrong type"))
    );
    assert_eq!(
        fails(json!({"paths": {"0": "/srv/data/a"}})),
        Some(("arguments:/paths".into(), "has the wrong type"))
    );
    assert_eq!(
        fails(json!({"paths": ["/srv/data/a", "/srv/data/b", "/srv/data/c", "/srv/data/d"]})),
        Some(("arguments:/paths".into(), "is too long"))
    );
    let numbers = rules(
        vec![rule(
            "ids",
            vec![Condition::Each(vec![
                Condition::Min(1.0),
                Condition::Max(9.0),
            ])],
        )],
        false,
    );
    assert_eq!(verdict(&numbers, json!({"ids": [1, 9]})), None);
    assert_eq!(
        verdict(&numbers, json!({"ids": [1, 10]})).map(|(_, f)| f),
        Some(Failure::Item("has an item above the maximum"))
    );
    assert_eq!(
        verdict(&numbers, json!({"ids": [1, "2"]})).map(|(_, f)| f),
        Some(Failure::Item("has an item of the wrong type"))
    );
}

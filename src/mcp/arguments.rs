//! The arguments of a call, read from the request body for argument rules
//! (`policy::arguments`): `params.arguments` of a `tools/call` or `prompts/get`,
//! `params` itself of a resource method (whose argument is its `uri`).
//!
//! Read only for calls an argument rule judges, after inspection accepted the body, by
//! a reader as strict as inspection and independent of it: a duplicate key at any
//! depth, a second spelling of `arguments` differing only in case, or anything
//! serde_json refuses (lone surrogates, numbers beyond a double such as `1e400`) makes
//! the arguments unreadable, and the call is refused. So the value rules judge is the
//! one every JSON parser reads, whichever of two duplicates it would have kept.

use std::cell::OnceCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Why arguments could not be read. Names no content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreadable {
    /// Not strict JSON (duplicate keys, …), or not the shape inspection found.
    Body,
    /// A second member spelling `arguments` but for case.
    Spelling,
}

/// Which member of `params` holds a call's arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// `params.arguments` (tools, prompts).
    Arguments,
    /// `params` itself (resources).
    Params,
}

/// A request body, parsed strictly on first use.
pub struct CallArguments<'b> {
    body: &'b [u8],
    parsed: OnceCell<Option<Value>>,
}

impl<'b> CallArguments<'b> {
    pub fn new(body: &'b [u8]) -> CallArguments<'b> {
        CallArguments {
            body,
            parsed: OnceCell::new(),
        }
    }

    /// The arguments of message `index` (of a batch, or 0): `Ok(None)` when there are
    /// none.
    pub fn of(&self, index: usize, holder: Holder) -> Result<Option<&Value>, Unreadable> {
        let top = self
            .parsed
            .get_or_init(|| strict_value(self.body))
            .as_ref()
            .ok_or(Unreadable::Body)?;
        let message = match top {
            Value::Array(items) => items.get(index),
            single if index == 0 => Some(single),
            _ => None,
        };
        let params = match message.and_then(|m| m.get("params")) {
            None => return Ok(None),
            Some(Value::Object(params)) => params,
            // Inspection refuses a named call without an object `params`.
            Some(_) => return Err(Unreadable::Body),
        };
        match holder {
            Holder::Params => Ok(message.and_then(|m| m.get("params"))),
            Holder::Arguments => {
                if params
                    .keys()
                    .any(|k| k != "arguments" && super::jsonrpc::same_but_for_case(k, "arguments"))
                {
                    return Err(Unreadable::Spelling);
                }
                Ok(params.get("arguments"))
            }
        }
    }
}

/// The body as a value, or `None` if it is not strict JSON.
pub fn strict_value(body: &[u8]) -> Option<Value> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = StrictValue.deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(value)
}

/// A JSON value whose objects have no duplicate keys.
struct StrictValue;

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number that is not finite"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(StrictValue)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(StrictValue)?;
            if out.insert(key, value).is_some() {
                return Err(de::Error::custom("duplicate object key"));
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(body: &str) -> Result<Option<Value>, Unreadable> {
        CallArguments::new(body.as_bytes())
            .of(0, Holder::Arguments)
            .map(|v| v.cloned())
    }

    #[test]
    fn reads_the_arguments_of_a_single_message_and_of_a_batch_element() {
        let one = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"path":"/a","n":{"d":2}}}}"#;
        assert_eq!(args(one), Ok(Some(json!({"path":"/a","n":{"d":2}}))));
        let batch = r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"t","arguments":{"p":1}}}]"#;
        let read = CallArguments::new(batch.as_bytes());
        assert_eq!(read.of(1, Holder::Arguments), Ok(Some(&json!({"p":1}))));
        assert_eq!(read.of(0, Holder::Arguments), Ok(None));
        assert_eq!(read.of(5, Holder::Arguments), Ok(None));
        let resource =
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a"}}"#;
        assert_eq!(
            CallArguments::new(resource.as_bytes())
                .of(0, Holder::Params)
                .map(|v| v.cloned()),
            Ok(Some(json!({"uri":"file:///a"})))
        );
        let none = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t"}}"#;
        assert_eq!(args(none), Ok(None));
    }

    /// Two parsers that keep different duplicates would run different calls: any
    /// duplicate, at any depth and however its key is spelled with escapes, is unreadable.
    #[test]
    fn duplicates_at_any_depth_are_unreadable() {
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"path":"/srv/a","path":"/etc/passwd"}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"path":"/srv/a","p\u0061th":"/etc/passwd"}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"o":{"d":1,"d":99}}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"o":[{"d":1,"\u0064":99}]}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{},"arguments":{"p":1}}}"#,
        ] {
            assert_eq!(args(body), Err(Unreadable::Body), "{body}");
        }
    }

    #[test]
    fn what_serde_json_refuses_is_unreadable() {
        for value in [
            r#""\ud800""#,
            r#""\udc00x""#,
            "1e400",
            "-1e400",
            "01",
            "NaN",
        ] {
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"t","arguments":{{"v":{value}}}}}}}"#
            );
            assert_eq!(args(&body), Err(Unreadable::Body), "{value}");
        }
    }

    /// Escapes are decoded before judging, as every upstream decodes them; `-0` and NUL
    /// characters read as what they are (the rules decide about them).
    #[test]
    fn escapes_are_decoded_and_odd_values_kept() {
        let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"p\u0061th":"/a\u0000b","z":-0,"e":"\ud83d\ude00"}}}"#;
        let got = args(body).unwrap().unwrap();
        assert_eq!(got["path"], json!("/a\u{0}b"));
        assert_eq!(got["z"].as_f64(), Some(0.0));
        assert_eq!(got["e"], json!("\u{1F600}"));
    }

    /// The fuzz target's invariant on a fixed corpus: whenever inspection accepts a body,
    /// the arguments read here are exactly those a lenient upstream (`Value`, last
    /// duplicate wins) reads, or refused for a second spelling of `arguments`.
    #[test]
    fn accepted_bodies_have_the_arguments_a_lenient_upstream_reads() {
        const TEMPLATES: &[&str] = &[
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/srv/data/a","o":{"depth":2,"l":[1,{"x":"y"}]}}}}"#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"t","arguments":{"p\u0061th":"/x"}}}]"#,
            r#"{"jsonrpc":"2.0","id":3,"method":"prompts/get","params":{"name":"p","arguments":{"lang":"en"}}}"#,
            r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"t","arguments":"not an object"}}"#,
        ];
        let splices = [
            "{",
            "}",
            "\"",
            ",",
            ":",
            "\\",
            "\\u0061",
            "\\ud800",
            r#""path":"/etc","#,
            r#""Arguments":{},"#,
            r#""arguments":{},"#,
            r#"{"a":1,"a":2}"#,
            "1e400",
            "-0",
            "null",
        ];
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut accepted = 0;
        for round in 0..20_000 {
            let mut body = TEMPLATES[round % TEMPLATES.len()].as_bytes().to_vec();
            if round % 4 != 0 {
                for _ in 0..=next() % 2 {
                    let at = (next() as usize) % (body.len() + 1);
                    let splice = splices[(next() as usize) % splices.len()];
                    body.splice(at..at, splice.bytes());
                }
            }
            let Ok(inspected) = crate::mcp::jsonrpc::inspect(&body) else {
                continue;
            };
            let Ok(lenient) = serde_json::from_slice::<Value>(&body) else {
                continue; // an id serde_json's Value cannot hold (see the fuzz target)
            };
            accepted += 1;
            let items = match &lenient {
                Value::Array(items) => items.clone(),
                one => vec![one.clone()],
            };
            assert_eq!(items.len(), inspected.messages.len());
            let read = CallArguments::new(&body);
            for (i, item) in items.iter().enumerate() {
                let upstream = item.get("params").and_then(|p| p.get("arguments"));
                match read.of(i, Holder::Arguments) {
                    Ok(judged) => {
                        assert_eq!(judged, upstream, "{}", String::from_utf8_lossy(&body))
                    }
                    Err(Unreadable::Spelling) => {}
                    Err(Unreadable::Body) => assert!(
                        item.get("params").is_some_and(|p| !p.is_object()),
                        "{}",
                        String::from_utf8_lossy(&body)
                    ),
                }
            }
        }
        assert!(accepted > 5_000, "only {accepted} bodies accepted");
    }

    #[test]
    fn a_second_spelling_of_arguments_is_unreadable() {
        for key in ["Arguments", "ARGUMENTS", "argument\u{17F}"] {
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"t","arguments":{{}},"{key}":{{"p":1}}}}}}"#
            );
            assert_eq!(args(&body), Err(Unreadable::Spelling), "{key}");
        }
    }
}

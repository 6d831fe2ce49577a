//! What the fuzz targets share: a JSON reading that keeps every member (duplicates
//! included, in document order), the policy the filter targets judge by, and a way to
//! cut an input into chunks.
//!
//! The targets are in `fuzz_targets/`; each one's doc comment says which invariant it
//! checks. docs/RELIABILITY.md has the figures.

use std::fmt;

use drawbridge::mcp::filter::ListKind;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A JSON document with object members in document order, duplicates kept: what any
/// client could read, whichever duplicate it takes.
#[derive(Debug, Clone, PartialEq)]
pub enum Doc {
    Obj(Vec<(String, Doc)>),
    Arr(Vec<Doc>),
    Str(String),
    Other,
}

impl<'de> Deserialize<'de> for Doc {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Doc, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Doc;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("JSON")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Doc, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, Doc>()? {
                    members.push(member);
                }
                Ok(Doc::Obj(members))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Doc, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Doc>()? {
                    items.push(item);
                }
                Ok(Doc::Arr(items))
            }
            fn visit_str<E>(self, v: &str) -> Result<Doc, E> {
                Ok(Doc::Str(v.to_string()))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Doc, E> {
                Ok(Doc::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Doc, E> {
                Ok(Doc::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Doc, E> {
                Ok(Doc::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Doc, E> {
                Ok(Doc::Other)
            }
            fn visit_unit<E>(self) -> Result<Doc, E> {
                Ok(Doc::Other)
            }
        }
        d.deserialize_any(V)
    }
}

impl Doc {
    /// Every value of member `key` (all of them when it is duplicated).
    pub fn members<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a Doc> + 'a {
        let members: &[(String, Doc)] = match self {
            Doc::Obj(m) => m,
            _ => &[],
        };
        members
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// True when some object anywhere in the document has a key twice.
    pub fn has_duplicate_keys(&self) -> bool {
        match self {
            Doc::Obj(m) => {
                m.iter()
                    .enumerate()
                    .any(|(i, (k, _))| m[..i].iter().any(|(other, _)| other == k))
                    || m.iter().any(|(_, v)| v.has_duplicate_keys())
            }
            Doc::Arr(items) => items.iter().any(Doc::has_duplicate_keys),
            _ => false,
        }
    }
}

/// The policy of the filter targets: tools and prompts named `echo` or starting with
/// `ok`, resources and templates starting with `ok`. Everything else is forbidden.
pub fn keep(kind: ListKind, name: &str) -> bool {
    match kind {
        ListKind::Tools | ListKind::Prompts => name == "echo" || name.starts_with("ok"),
        ListKind::Resources | ListKind::ResourceTemplates => name.starts_with("ok"),
    }
}

/// The list members of a `result` and the member of their items the policy judges.
pub const LISTS: [(&str, ListKind, &str); 4] = [
    ("tools", ListKind::Tools, "name"),
    ("prompts", ListKind::Prompts, "name"),
    ("resources", ListKind::Resources, "uri"),
    (
        "resourceTemplates",
        ListKind::ResourceTemplates,
        "uriTemplate",
    ),
];

/// The first forbidden thing a client could read in one JSON-RPC message or batch,
/// whichever duplicate member it takes: a list item that is not an object whose judged
/// member is present once, a string, and allowed; or a `resources/updated` notification
/// for a URI the caller may not read.
pub fn forbidden_entry(doc: &Doc) -> Option<String> {
    let messages: Vec<&Doc> = match doc {
        Doc::Arr(items) => items.iter().collect(),
        other => vec![other],
    };
    for message in messages {
        for result in message.members("result") {
            for (field, kind, key) in LISTS {
                for list in result.members(field) {
                    let Doc::Arr(items) = list else { continue };
                    for item in items {
                        let names: Vec<&Doc> = item.members(key).collect();
                        let allowed = matches!(
                            (names.as_slice(), item),
                            ([Doc::Str(name)], Doc::Obj(_)) if keep(kind, name)
                        );
                        if !allowed {
                            return Some(format!("{field} item {item:?}"));
                        }
                    }
                }
            }
        }
        let update = message
            .members("method")
            .any(|m| *m == Doc::Str("notifications/resources/updated".into()));
        if update {
            let uris: Vec<&Doc> = message
                .members("params")
                .flat_map(|p| p.members("uri"))
                .collect();
            let visible = message.members("params").count() == 1
                && matches!(uris.as_slice(), [Doc::Str(uri)] if keep(ListKind::Resources, uri));
            if !visible {
                return Some(format!("resources/updated for {uris:?}"));
            }
        }
    }
    None
}

/// Cuts `data` into chunks: the first byte says how many cuts (0 to 7), the next ones
/// where (each a fraction of the rest); the remaining bytes are the stream. A cut may
/// fall anywhere, including inside a UTF-8 character or between CR and LF.
pub fn split_chunks(data: &[u8]) -> Vec<&[u8]> {
    let Some((&count, rest)) = data.split_first() else {
        return vec![data];
    };
    let count = usize::from(count % 8).min(rest.len());
    let (cuts, stream) = rest.split_at(count);
    let mut points: Vec<usize> = cuts
        .iter()
        .map(|&c| usize::from(c) * stream.len() / 255)
        .collect();
    points.sort_unstable();
    let mut chunks = Vec::with_capacity(points.len() + 1);
    let mut at = 0;
    for point in points {
        chunks.push(&stream[at..point]);
        at = point;
    }
    chunks.push(&stream[at..]);
    chunks
}

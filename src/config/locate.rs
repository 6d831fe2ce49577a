//! Where things are in a YAML file: a map from key paths (`routes[1].upstream.url`) to
//! line and column, built once per load from the YAML event stream.
//!
//! serde gives us typed values but forgets positions; validation errors found after
//! deserialisation (a bad URL, a duplicate route name, a missing variable) still need to
//! point at the line a person must edit. This module owns that mapping and nothing else.

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A position in the file, both 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl Position {
    /// The top of the file: where an error points when there is no node to point at (a
    /// file of comments only, a syntax error serde_yaml gives no location).
    pub const TOP: Position = Position { line: 1, column: 1 };
}

/// Every node of the document by key path, in document order.
#[derive(Debug, Default)]
pub struct Locations {
    nodes: Vec<(String, Position)>,
}

impl Locations {
    /// Walks `text` once. A syntax error yields an empty map: serde reports it with its own
    /// position, so nothing is lost.
    pub fn of(text: &str) -> Locations {
        let mut walker = Walker::default();
        let mut parser = Parser::new_from_str(text);
        if parser.load(&mut walker, false).is_err() {
            return Locations::default();
        }
        Locations {
            nodes: walker.nodes,
        }
    }

    /// Where the second document of a file with several (`---`) starts, if it has more
    /// than one: the error serde gives for such a file has no position of its own.
    pub fn second_document(text: &str) -> Option<Position> {
        #[derive(Default)]
        struct Starts(Vec<Marker>);
        impl MarkedEventReceiver for Starts {
            fn on_event(&mut self, ev: Event, mark: Marker) {
                if matches!(ev, Event::DocumentStart) {
                    self.0.push(mark);
                }
            }
        }
        let mut starts = Starts::default();
        // A syntax error further on still leaves the starts found before it.
        let _ = Parser::new_from_str(text).load(&mut starts, true);
        starts.0.get(1).copied().map(position)
    }

    /// The position of the node at `path`, or of its nearest ancestor that exists, the
    /// document itself last (a missing top-level key points at the top-level mapping);
    /// `None` only when the document has no node at all (comments only).
    pub fn position_of(&self, path: &str) -> Option<Position> {
        let mut candidate = path;
        loop {
            if let Some((_, pos)) = self.nodes.iter().find(|(p, _)| p == candidate) {
                return Some(*pos);
            }
            if candidate.is_empty() {
                return None;
            }
            candidate = candidate
                .rfind(['.', '['])
                .map_or("", |cut| &candidate[..cut]);
        }
    }
}

enum Frame {
    Map {
        path: String,
        next_key: Option<String>,
    },
    Seq {
        path: String,
        index: usize,
    },
}

#[derive(Default)]
struct Walker {
    stack: Vec<Frame>,
    nodes: Vec<(String, Position)>,
}

impl Walker {
    /// Path of the node that starts now; `None` when this scalar is a mapping key.
    fn path_of_next_node(&mut self) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Seq { path, index }) => {
                let p = format!("{path}[{index}]");
                *index += 1;
                Some(p)
            }
            Some(Frame::Map { path, next_key }) => next_key.take().map(|key| join(path, &key)),
        }
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

fn position(mark: Marker) -> Position {
    // yaml-rust2 counts lines from 1 and columns from 0.
    Position {
        line: mark.line(),
        column: mark.col() + 1,
    }
}

impl MarkedEventReceiver for Walker {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(value, ..) => match self.path_of_next_node() {
                Some(path) => self.nodes.push((path, position(mark))),
                None => {
                    if let Some(Frame::Map { next_key, .. }) = self.stack.last_mut() {
                        *next_key = Some(value);
                    }
                }
            },
            Event::MappingStart(..) => {
                let path = self.path_of_next_node().unwrap_or_default();
                self.nodes.push((path.clone(), position(mark)));
                self.stack.push(Frame::Map {
                    path,
                    next_key: None,
                });
            }
            Event::SequenceStart(..) => {
                let path = self.path_of_next_node().unwrap_or_default();
                self.nodes.push((path.clone(), position(mark)));
                self.stack.push(Frame::Seq { path, index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            Event::Alias(..) => {
                let _ = self.path_of_next_node();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "listen: 0.0.0.0:8080\nroutes:\n  - name: a\n    upstream:\n      url: http://x\n  - name: b\n    match: { path: /b }\n";

    #[test]
    fn the_second_document_is_found() {
        assert_eq!(
            Locations::second_document("---\n...\n---\nroutes: []\n"),
            Some(Position { line: 3, column: 1 })
        );
        assert_eq!(
            Locations::second_document("a: 1\n---\nb: 2\n"),
            Some(Position { line: 2, column: 1 })
        );
        assert_eq!(Locations::second_document("a: 1\n"), None);
    }

    #[test]
    fn finds_nested_keys_in_block_and_flow_style() {
        let loc = Locations::of(DOC);
        assert_eq!(
            loc.position_of("listen"),
            Some(Position { line: 1, column: 9 })
        );
        assert_eq!(
            loc.position_of("routes[0].upstream.url"),
            Some(Position {
                line: 5,
                column: 12
            })
        );
        assert_eq!(
            loc.position_of("routes[1].match.path"),
            Some(Position {
                line: 7,
                column: 20
            })
        );
    }

    #[test]
    fn a_missing_top_level_key_points_at_the_document() {
        // Found by fuzz/fuzz_targets/config.rs: gateway.yaml cut to its comments and a
        // stray line gave "routes: at least one route is needed" without a position.
        // The top-level mapping, where yaml-rust2 marks it (after its first key).
        let loc = Locations::of("# a comment\nlisten: 0.0.0.0:8080\n");
        assert_eq!(
            loc.position_of("routes"),
            Some(Position { line: 2, column: 7 })
        );
        assert_eq!(
            Locations::of("# only a comment\n").position_of("routes"),
            None
        );
    }

    #[test]
    fn falls_back_to_the_nearest_existing_ancestor() {
        let loc = Locations::of(DOC);
        assert_eq!(
            loc.position_of("routes[1].upstream.url"),
            loc.position_of("routes[1]")
        );
    }
}

//! Server-sent events, read incrementally as they stream, the way the WHATWG
//! `EventSource` parser and the MCP SDK clients read them.
//!
//! [`EventReader`] cuts a byte stream into events: lines end in CRLF, a lone LF or a lone
//! CR (a chunk boundary may fall anywhere, even between CR and LF; at the end of the
//! stream a final CR ends its line); an empty line ends an event; one UTF-8 byte order
//! mark at the very start of the stream is skipped. An event is parsed into its fields
//! ([`Event`]) and the gateway writes it out again itself ([`Event::render`]), with LF
//! line endings: the client reads exactly the form the gateway checked.
//!
//! What the reader refuses, so that the caller can end the stream (fail closed): an
//! event that is not UTF-8 (comments included: a client decoding with replacement
//! characters would read something else), and an event larger than the configured cap
//! (never buffered without bound). An unterminated event at the end of the stream is
//! dropped: the WHATWG parser does not dispatch it either.

/// The UTF-8 byte order mark.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Why a stream cannot be read further.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamError {
    /// An event grew past the cap.
    EventTooLarge,
    /// An event is not UTF-8.
    NotUtf8,
}

impl StreamError {
    /// The `reason` label of `drawbridge_stream_errors_total`.
    pub fn reason(self) -> &'static str {
        match self {
            StreamError::EventTooLarge => "event_too_large",
            StreamError::NotUtf8 => "not_utf8",
        }
    }
}

/// One line of an event: a comment (text after the colon) or a field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Comment(String),
    Field(String, String),
}

/// One event, its lines in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    pub lines: Vec<Line>,
}

impl Event {
    /// Parses one event's text (lines without their terminators) per WHATWG: the name is
    /// everything before the first colon, one space after it is dropped, a line without a
    /// colon is a field with an empty value.
    fn parse(text: &str) -> Event {
        let mut lines = Vec::new();
        for line in split_lines(text) {
            if line.is_empty() {
                continue;
            }
            if let Some(comment) = line.strip_prefix(':') {
                lines.push(Line::Comment(comment.to_string()));
                continue;
            }
            let (name, value) = match line.split_once(':') {
                Some((name, value)) => (name, value.strip_prefix(' ').unwrap_or(value)),
                None => (line, ""),
            };
            lines.push(Line::Field(name.to_string(), value.to_string()));
        }
        Event { lines }
    }

    fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.lines.iter().filter_map(|l| match l {
            Line::Field(n, v) => Some((n.as_str(), v.as_str())),
            Line::Comment(_) => None,
        })
    }

    /// The event type the client dispatches: the last `event` field, `message` without.
    pub fn kind(&self) -> &str {
        match self.fields().filter(|(n, _)| *n == "event").last() {
            Some((_, v)) if !v.is_empty() => v,
            _ => "message",
        }
    }

    /// The data the client dispatches (data fields joined by LF); `None` without any data
    /// field (the client dispatches nothing).
    pub fn data(&self) -> Option<String> {
        let mut data: Option<String> = None;
        for (name, value) in self.fields() {
            if name == "data" {
                match &mut data {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(value);
                    }
                    None => data = Some(value.to_string()),
                }
            }
        }
        data
    }

    /// Writes the event with LF line endings; with `data`, the data fields are replaced by
    /// that text (one `data` line per line of it) where the first one was.
    ///
    /// A field whose name starts with a byte order mark is not written. No client reads
    /// it as a field of its own — except when it opens the stream: the client skips one
    /// BOM there and would read `\u{feff}data: …` as the data the gateway never checked
    /// (an upstream sending two BOMs got an unfiltered event through that way).
    pub fn render(&self, data: Option<&str>) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + data.map_or(0, str::len));
        let mut wrote_data = false;
        for line in &self.lines {
            match line {
                Line::Comment(text) => {
                    out.push(b':');
                    out.extend_from_slice(text.as_bytes());
                }
                Line::Field(name, _) if name.starts_with('\u{feff}') => continue,
                Line::Field(name, value) => {
                    if let (true, Some(new)) = (name == "data", data) {
                        if wrote_data {
                            continue;
                        }
                        wrote_data = true;
                        for (i, part) in new.split('\n').enumerate() {
                            if i > 0 {
                                out.push(b'\n');
                            }
                            out.extend_from_slice(b"data: ");
                            out.extend_from_slice(part.as_bytes());
                        }
                    } else {
                        out.extend_from_slice(name.as_bytes());
                        out.extend_from_slice(b": ");
                        out.extend_from_slice(value.as_bytes());
                    }
                }
            }
            out.push(b'\n');
        }
        out.push(b'\n');
        out
    }
}

/// Splits text at CRLF, lone CR and lone LF.
fn split_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        match rest.find(['\r', '\n']) {
            Some(at) => {
                let line = &rest[..at];
                let skip = if rest[at..].starts_with("\r\n") { 2 } else { 1 };
                rest = &rest[at + skip..];
                Some(line)
            }
            None => {
                let line = rest;
                rest = "";
                Some(line)
            }
        }
    })
}

/// Reads events out of a byte stream, holding at most one partial event.
#[derive(Debug)]
pub struct EventReader {
    buf: Vec<u8>,
    /// Where the current (unfinished) line starts.
    line_start: usize,
    /// Where the search for a line end resumes: the bytes before it hold none (a long
    /// line arriving in many chunks is searched once, not once per chunk).
    scan_from: usize,
    /// The byte order mark question is settled (the stream's first bytes were seen).
    started: bool,
    max_event: usize,
}

impl EventReader {
    /// A reader refusing events larger than `max_event` bytes.
    pub fn new(max_event: usize) -> EventReader {
        EventReader {
            buf: Vec::new(),
            line_start: 0,
            scan_from: 0,
            started: false,
            max_event,
        }
    }

    /// Adds a chunk and returns every event it completes; `end` marks the end of the
    /// stream (a final CR then ends its line; an unterminated event is dropped).
    pub fn push(&mut self, chunk: &[u8], end: bool) -> Result<Vec<Event>, StreamError> {
        self.buf.extend_from_slice(chunk);
        if !self.started {
            if self.buf.len() < BOM.len() && BOM.starts_with(&self.buf) && !end {
                return Ok(Vec::new());
            }
            if self.buf.starts_with(BOM) {
                self.buf.drain(..BOM.len());
            }
            self.started = true;
        }
        let mut events = Vec::new();
        let mut event_start = 0;
        let mut pos = self.scan_from.max(self.line_start);
        loop {
            let Some(offset) = memchr::memchr2(b'\n', b'\r', &self.buf[pos..]) else {
                pos = self.buf.len();
                break;
            };
            let term = pos + offset;
            let next = if self.buf[term] == b'\r' {
                match self.buf.get(term + 1) {
                    Some(b'\n') => term + 2,
                    Some(_) => term + 1,
                    None if end => term + 1,
                    None => {
                        // Wait: an LF may follow in the next chunk.
                        pos = term;
                        break;
                    }
                }
            } else {
                term + 1
            };
            let line_is_empty = term == self.line_start;
            self.line_start = next;
            pos = next;
            if line_is_empty {
                let raw = &self.buf[event_start..next];
                if raw.len() > self.max_event {
                    return Err(StreamError::EventTooLarge);
                }
                let text = std::str::from_utf8(raw).map_err(|_| StreamError::NotUtf8)?;
                events.push(Event::parse(text));
                event_start = next;
            }
        }
        self.scan_from = pos;
        if event_start > 0 {
            self.buf.drain(..event_start);
            self.line_start -= event_start;
            self.scan_from -= event_start;
        }
        if self.buf.len() > self.max_event {
            return Err(StreamError::EventTooLarge);
        }
        if end {
            // Not dispatched by the client either: dropped, never passed on raw.
            self.buf.clear();
            self.line_start = 0;
            self.scan_from = 0;
        }
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(chunks: &[&[u8]]) -> Result<Vec<Event>, StreamError> {
        let mut r = EventReader::new(1 << 20);
        let mut out = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            out.extend(r.push(c, i + 1 == chunks.len())?);
        }
        Ok(out)
    }

    fn data_of(events: &[Event]) -> Vec<Option<String>> {
        events.iter().map(Event::data).collect()
    }

    #[test]
    fn whole_events_in_one_chunk() {
        let events = read_all(&[b"event: a\ndata: 1\n\ndata: 2\n\n"]).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].kind(), "a");
        assert_eq!(events[1].kind(), "message");
        assert_eq!(data_of(&events), vec![Some("1".into()), Some("2".into())]);
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        let stream: &[u8] = b"\xEF\xBB\xBFid: 1\r\nevent: endpoint\r\ndata: /m?s=1\r\n\r\n: comment\n\ndata: a\rdata: b\r\rdata:{\"x\":\r\ndata:1}\n\n";
        let whole = read_all(&[stream]).unwrap();
        assert_eq!(whole.len(), 4, "a comment-only event is an event too");
        assert_eq!(
            whole[0].kind(),
            "endpoint",
            "the BOM at stream start is skipped"
        );
        assert_eq!(whole[0].lines[0], Line::Field("id".into(), "1".into()));
        assert_eq!(whole[2].data().as_deref(), Some("a\nb"));
        assert_eq!(whole[3].data().as_deref(), Some("{\"x\":\n1}"));
        for cut in 0..stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(read_all(&[a, b]).unwrap(), whole, "cut at {cut}");
        }
        // Byte by byte.
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(read_all(&bytes).unwrap(), whole);
    }

    #[test]
    fn a_bom_elsewhere_is_part_of_the_field_name() {
        let events = read_all(&[b"data: 1\n\n\xEF\xBB\xBFdata: 2\n\n"]).unwrap();
        assert_eq!(
            events[1].data(),
            None,
            "the client ignores the unknown field"
        );
    }

    #[test]
    fn a_field_behind_a_second_bom_is_not_written_for_a_client_to_read() {
        // Found by fuzz/fuzz_targets/sse.rs with `data: 1\n\n\u{feff}data: 2\n\n`: the
        // second event rendered alone started with a BOM, which a client starting its
        // stream there skips, reading `data: 2` the gateway had not seen as data.
        let events = read_all(&[b"\xEF\xBB\xBF\xEF\xBB\xBFdata: 2\nid: 7\n\n"]).unwrap();
        assert_eq!(events[0].data(), None, "the gateway reads no data");
        let rendered = events[0].render(None);
        assert_eq!(rendered, b"id: 7\n\n".to_vec());
        let client = read_all(&[&rendered]).unwrap();
        assert_eq!(client[0].data(), None, "nor does a client starting there");
    }

    #[test]
    fn a_final_cr_ends_the_last_event_at_end_of_stream() {
        let events = read_all(&[b"data: 1\r", b"\r"]).unwrap();
        assert_eq!(data_of(&events), vec![Some("1".into())]);
    }

    #[test]
    fn an_unterminated_event_at_end_of_stream_is_dropped() {
        let events = read_all(&[b"data: 1\n\ndata: 2\n"]).unwrap();
        assert_eq!(data_of(&events), vec![Some("1".into())]);
        let events = read_all(&[b"data: 1\n\ndata: 2"]).unwrap();
        assert_eq!(events.len(), 1);
    }

    #[test]
    fn invalid_utf8_anywhere_in_an_event_is_an_error() {
        for stream in [
            &b"data: \xFF\n\n"[..],
            b": comment \xC3\n\ndata: 1\n\n",
            b"id: \xED\xA0\x80\n\n",
        ] {
            assert_eq!(read_all(&[stream]), Err(StreamError::NotUtf8));
        }
        // A multi-byte character split across chunks is fine.
        let events = read_all(&[b"data: \xC3", b"\xA9\n\n"]).unwrap();
        assert_eq!(events[0].data().as_deref(), Some("é"));
    }

    #[test]
    fn events_over_the_cap_are_errors_whether_complete_or_not() {
        let mut r = EventReader::new(16);
        assert_eq!(
            r.push(b"data: 0123456789abcdef", false),
            Err(StreamError::EventTooLarge)
        );
        let mut r = EventReader::new(16);
        assert_eq!(
            r.push(b"data: 0123456789abcdef\n\n", false),
            Err(StreamError::EventTooLarge)
        );
        let mut r = EventReader::new(16);
        assert_eq!(r.push(b"data: 01234567\n\n", false).unwrap().len(), 1);
    }

    #[test]
    fn rendering_normalises_and_replaces_data() {
        let events =
            read_all(&[b"id: 9\r\nevent: endpoint\r\n:c\r\ndata: /old\r\ndata:x\r\nretry\r\n\r\n"])
                .unwrap();
        assert_eq!(
            events[0].render(None),
            b"id: 9\nevent: endpoint\n:c\ndata: /old\ndata: x\nretry: \n\n".to_vec()
        );
        assert_eq!(
            events[0].render(Some("/new\n2")),
            b"id: 9\nevent: endpoint\n:c\ndata: /new\ndata: 2\nretry: \n\n".to_vec()
        );
        assert_eq!(
            read_all(&[b"event:\ndata: 1\n\n"]).unwrap()[0].kind(),
            "message"
        );
    }
}

//! Server-sent events, read incrementally as they stream.
//!
//! [`EventSplitter`] cuts a byte stream into whole events (an event ends with an empty
//! line; lines end in LF, CRLF or CR, and a chunk boundary may fall anywhere, even between
//! CR and LF). Events are handed out as their original bytes, so anything the gateway does
//! not rewrite is forwarded exactly as the upstream sent it.

/// Buffers a partial event between chunks.
#[derive(Debug, Default)]
pub struct EventSplitter {
    buf: Vec<u8>,
    /// Where the current (unfinished) line starts.
    line_start: usize,
}

impl EventSplitter {
    /// Adds a chunk and returns every event it completes, each with its terminating blank line.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Vec<u8>> {
        self.buf.extend_from_slice(chunk);
        let mut events = Vec::new();
        let mut event_start = 0;
        let mut pos = self.line_start;
        while let Some(offset) = memchr::memchr2(b'\n', b'\r', &self.buf[pos..]) {
            let term = pos + offset;
            let next = if self.buf[term] == b'\r' {
                match self.buf.get(term + 1) {
                    Some(b'\n') => term + 2,
                    Some(_) => term + 1,
                    None => break, // wait: an LF may follow in the next chunk
                }
            } else {
                term + 1
            };
            let line_is_empty = term == self.line_start;
            self.line_start = next;
            pos = next;
            if line_is_empty {
                events.push(self.buf[event_start..next].to_vec());
                event_start = next;
            }
        }
        if event_start > 0 {
            self.buf.drain(..event_start);
            self.line_start -= event_start;
        }
        events
    }

    /// Bytes held back waiting for the end of an event.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Whatever is buffered but not yet a whole event (at end of stream).
    pub fn take_rest(&mut self) -> Vec<u8> {
        self.line_start = 0;
        std::mem::take(&mut self.buf)
    }
}

/// The fields of one event, as (name, value) pairs in order; comments are skipped.
pub fn fields(event: &[u8]) -> Vec<(&str, &str)> {
    let text = match std::str::from_utf8(event) {
        Ok(t) => t,
        Err(_) => return Vec::new(),
    };
    text.split(['\n', '\r'])
        .filter(|line| !line.is_empty() && !line.starts_with(':'))
        .map(|line| match line.split_once(':') {
            Some((name, value)) => (name, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        })
        .collect()
}

/// The event type (`message` when absent) and the data (lines joined by LF).
pub fn event_type_and_data(event: &[u8]) -> (String, String) {
    let mut kind = String::from("message");
    let mut data: Vec<&str> = Vec::new();
    for (name, value) in fields(event) {
        match name {
            "event" => kind = value.to_string(),
            "data" => data.push(value),
            _ => {}
        }
    }
    (kind, data.join("\n"))
}

/// Re-renders an event with new data, keeping its other fields (id, retry, event).
pub fn with_data(event: &[u8], data: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(event.len() + data.len());
    let mut wrote_data = false;
    for (name, value) in fields(event) {
        if name == "data" {
            if !wrote_data {
                for line in data.split('\n') {
                    out.extend_from_slice(b"data: ");
                    out.extend_from_slice(line.as_bytes());
                    out.push(b'\n');
                }
                wrote_data = true;
            }
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_all(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut s = EventSplitter::default();
        chunks.iter().flat_map(|c| s.push(c)).collect()
    }

    #[test]
    fn whole_events_in_one_chunk() {
        let events = split_all(&[b"event: a\ndata: 1\n\ndata: 2\n\n"]);
        assert_eq!(
            events,
            vec![b"event: a\ndata: 1\n\n".to_vec(), b"data: 2\n\n".to_vec()]
        );
    }

    #[test]
    fn events_split_across_chunks_and_crlf() {
        let events = split_all(&[b"data: he", b"llo\r", b"\n\r", b"\ndata: x\r\n", b"\r\n"]);
        assert_eq!(
            events,
            vec![b"data: hello\r\n\r\n".to_vec(), b"data: x\r\n\r\n".to_vec()]
        );
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        let stream: &[u8] =
            b"id: 1\r\nevent: endpoint\r\ndata: /m?s=1\r\n\r\n: comment\n\ndata: a\rdata: b\r\r\n";
        let whole = split_all(&[stream]);
        assert_eq!(whole.len(), 3, "a comment-only event is forwarded too");
        for cut in 0..stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(split_all(&[a, b]), whole, "cut at {cut}");
        }
    }

    #[test]
    fn partial_event_stays_buffered() {
        let mut s = EventSplitter::default();
        assert!(s.push(b"data: 1\n").is_empty());
        assert_eq!(s.take_rest(), b"data: 1\n");
    }

    #[test]
    fn fields_type_and_data() {
        let (kind, data) = event_type_and_data(b"event: endpoint\r\ndata: /a\r\ndata: b\r\n\r\n");
        assert_eq!(kind, "endpoint");
        assert_eq!(data, "/a\nb");
        assert_eq!(event_type_and_data(b"data:x\n\n").0, "message");
        assert_eq!(
            with_data(b"id: 9\nevent: endpoint\ndata: /old\n\n", "/new?x=1"),
            b"id: 9\nevent: endpoint\ndata: /new?x=1\n\n".to_vec()
        );
    }
}

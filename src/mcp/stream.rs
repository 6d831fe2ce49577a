//! The filter every server-to-client event stream goes through: POST answers, GET
//! streams (resumed or not), the legacy transport's stream, `subscriptions/listen`.
//!
//! Each event is read as the client will read it ([`EventReader`]), and written out
//! again by the gateway: its data filtered by shape ([`filter_message`]) when the route
//! has a policy, an `endpoint` event mapped and sealed by the caller's hook. Whatever
//! cannot be read or filtered ends the stream: the client gets an error event instead
//! (see [`error_event`]) and nothing after it. Once failed, the filter passes nothing.

use super::filter::{filter_message_with, Keep, ListKind, Pinned, Rules, TaskRules};
use super::handles::{may_carry_state, may_carry_task_id, SealState};
use super::sse::{Event, EventReader, StreamError};

/// Why the gateway ended a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamFailure {
    /// The reader refused the stream (oversized or non-UTF-8 event).
    Read(StreamError),
    /// An event's data could not be filtered (not JSON, or a list of the wrong shape).
    Unfilterable,
    /// An `endpoint` event that could not be mapped into the route and sealed.
    Endpoint,
}

impl StreamFailure {
    /// The `reason` label of `drawbridge_stream_errors_total`.
    pub fn reason(self) -> &'static str {
        match self {
            StreamFailure::Read(e) => e.reason(),
            StreamFailure::Unfilterable => "unfilterable_message",
            StreamFailure::Endpoint => "unmappable_endpoint",
        }
    }
}

/// What the stream's owner supplies: the policy, and the endpoint mapping.
pub struct Hooks<'a> {
    /// `None` on a route without a policy: data passes unfiltered.
    pub keep: Option<Keep<'a>>,
    /// Seals an upstream `requestState` (see `mcp::handles`); `None`: left as it is.
    pub seal_state: Option<SealState<'a>>,
    /// Seals or withholds upstream task ids (see `filter::TaskRules`); `None`: left as
    /// they are.
    pub tasks: Option<TaskRules<'a>>,
    /// Pinned tool definitions (see `filter::Pinned`); `None`: no pins.
    pub pinned: Option<Pinned<'a>>,
    /// The `endpoint` event's data as the client may see it; `None` if it cannot be.
    pub endpoint: &'a dyn Fn(&str) -> Option<String>,
    /// The data of the events that end a failed stream (JSON-RPC messages).
    pub error_messages: &'a dyn Fn() -> Vec<String>,
}

/// The output of one chunk.
#[derive(Debug, Default)]
pub struct StreamOutput {
    pub bytes: Vec<u8>,
    pub removed: Vec<(ListKind, usize)>,
    /// Set on the chunk where the stream failed; the error events are in `bytes`.
    pub failure: Option<StreamFailure>,
}

/// Filters one event stream.
#[derive(Debug)]
pub struct SseFilter {
    reader: EventReader,
    failed: bool,
}

impl SseFilter {
    /// A filter refusing events over `max_event` bytes.
    pub fn new(max_event: usize) -> SseFilter {
        SseFilter {
            reader: EventReader::new(max_event),
            failed: false,
        }
    }

    /// The stream failed: nothing more may pass (the caller should close it).
    pub fn failed(&self) -> bool {
        self.failed
    }

    pub fn push(&mut self, chunk: &[u8], end: bool, hooks: &Hooks<'_>) -> StreamOutput {
        let mut out = StreamOutput::default();
        if self.failed {
            return out;
        }
        let events = match self.reader.push(chunk, end) {
            Ok(events) => events,
            Err(e) => {
                // Events completed earlier in this chunk are dropped too: simpler, and
                // the stream ends here anyway.
                self.fail(StreamFailure::Read(e), hooks, &mut out);
                return out;
            }
        };
        for event in &events {
            if let Err(failure) = self.one_event(event, hooks, &mut out) {
                self.fail(failure, hooks, &mut out);
                break;
            }
        }
        out
    }

    fn one_event(
        &self,
        event: &Event,
        hooks: &Hooks<'_>,
        out: &mut StreamOutput,
    ) -> Result<(), StreamFailure> {
        let data = event.data();
        if event.kind() == "endpoint" {
            let Some(data) = data else {
                return Err(StreamFailure::Endpoint);
            };
            let public = (hooks.endpoint)(&data).ok_or(StreamFailure::Endpoint)?;
            out.bytes.extend(event.render(Some(&public)));
            return Ok(());
        }
        let Some(data) = data else {
            out.bytes.extend(event.render(None));
            return Ok(());
        };
        // Without a policy only a `requestState` or a task id needs reading: data that
        // cannot hold one (no such name, no escape) passes unread.
        let rules = Rules {
            keep: hooks.keep,
            seal_state: hooks
                .seal_state
                .filter(|_| hooks.keep.is_some() || may_carry_state(&data)),
            tasks: hooks
                .tasks
                .filter(|_| hooks.keep.is_some() || may_carry_task_id(&data)),
            pinned: hooks.pinned.filter(|_| hooks.keep.is_some()),
        };
        if rules.keep.is_none() && rules.seal_state.is_none() && rules.tasks.is_none() {
            out.bytes.extend(event.render(None));
            return Ok(());
        }
        if data.trim_matches([' ', '\t', '\n']).is_empty() {
            // A priming or keep-alive event: nothing a client parses.
            out.bytes.extend(event.render(None));
            return Ok(());
        }
        let filtered = match filter_message_with(&data, rules) {
            Ok(filtered) => filtered,
            // Without a policy only a state is sealed; an event that cannot be read passes
            // as it did before (a raw state the client sends back is refused).
            Err(_) if rules.keep.is_none() => {
                out.bytes.extend(event.render(None));
                return Ok(());
            }
            Err(_) => return Err(StreamFailure::Unfilterable),
        };
        out.removed.extend(filtered.removed);
        if filtered.dropped {
            return Ok(());
        }
        out.bytes
            .extend(event.render(filtered.rewritten.as_deref()));
        Ok(())
    }

    fn fail(&mut self, failure: StreamFailure, hooks: &Hooks<'_>, out: &mut StreamOutput) {
        self.failed = true;
        out.failure = Some(failure);
        for message in (hooks.error_messages)() {
            out.bytes.extend(error_event(&message));
        }
    }
}

/// An event carrying one JSON-RPC message (the gateway's error answers: a JSON-RPC error
/// for each request of the POST whose stream failed, or an error log notification on a
/// GET stream). Type `message`, so that every SDK client dispatches it.
pub fn error_event(message: &str) -> Vec<u8> {
    format!("event: message\ndata: {message}\n\n").into_bytes()
}

/// The notification that tells a client on a GET stream why the stream ends.
pub fn error_notification(message: &str) -> String {
    let text = serde_json::Value::String(message.to_string());
    format!(
        r#"{{"jsonrpc":"2.0","method":"notifications/message","params":{{"level":"error","logger":"drawbridge","data":{text}}}}}"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only_echo(kind: ListKind, name: &str) -> bool {
        kind == ListKind::Tools && name == "echo"
    }

    fn endpoint(data: &str) -> Option<String> {
        data.strip_prefix("/ok")
            .map(|rest| format!("/public{rest}"))
    }

    fn errors() -> Vec<String> {
        vec![r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32002,"message":"no"}}"#.to_string()]
    }

    fn hooks() -> Hooks<'static> {
        Hooks {
            keep: Some(&only_echo),
            seal_state: None,
            tasks: None,
            pinned: None,
            endpoint: &endpoint,
            error_messages: &errors,
        }
    }

    fn run(chunks: &[&[u8]], max: usize) -> (String, Option<StreamFailure>) {
        let mut f = SseFilter::new(max);
        let mut bytes = Vec::new();
        let mut failure = None;
        for (i, c) in chunks.iter().enumerate() {
            let out = f.push(c, i + 1 == chunks.len(), &hooks());
            bytes.extend(out.bytes);
            failure = failure.or(out.failure);
        }
        (String::from_utf8(bytes).unwrap(), failure)
    }

    const LIST: &str =
        r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"echo"},{"name":"secret"}]}}"#;
    const FILTERED: &str = r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"echo"}]}}"#;

    #[test]
    fn every_event_type_is_filtered_at_every_split_point() {
        let stream = format!(
            "\u{feff}: hi\r\nid: 1\r\nevent: foo\r\ndata: {LIST}\r\n\r\nid: 2\rdata: {LIST}\r\rdata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}}\n\n"
        );
        let want = format!(
            ": hi\nid: 1\nevent: foo\ndata: {FILTERED}\n\nid: 2\ndata: {FILTERED}\n\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}}\n\n"
        );
        let bytes = stream.as_bytes();
        for cut in 0..bytes.len() {
            let (a, b) = bytes.split_at(cut);
            let (text, failure) = run(&[a, b], 1 << 20);
            assert_eq!(text, want, "cut at {cut}");
            assert_eq!(failure, None);
        }
    }

    #[test]
    fn pinned_tools_are_checked_in_every_event() {
        // The policy shows `echo`; its pin accepts only the reviewed definition.
        let pinned = |name: &str, item: &str| name == "echo" && !item.contains("changed");
        let h = Hooks {
            pinned: Some(&pinned),
            ..hooks()
        };
        let changed = LIST.replace(
            r#"{"name":"echo"}"#,
            r#"{"name":"echo","description":"changed"}"#,
        );
        let stream = format!("data: {LIST}\n\ndata: {changed}\n\n");
        let out = SseFilter::new(1 << 20).push(stream.as_bytes(), true, &h);
        assert_eq!(out.failure, None);
        assert_eq!(
            String::from_utf8(out.bytes).unwrap(),
            format!(
                "data: {FILTERED}\n\ndata: {}\n\n",
                r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[]}}"#
            )
        );
    }

    #[test]
    fn a_second_byte_order_mark_does_not_carry_a_list_past_the_filter() {
        // Found by fuzz/fuzz_targets/sse.rs: the reader skips one BOM, so the gateway read
        // `\u{feff}data: …` as an unknown field and passed the event unfiltered; the
        // client, for which the stream started there, skipped that BOM and read the list.
        let stream = format!("\u{feff}\u{feff}data: {LIST}\n\ndata: {LIST}\n\n");
        let (text, failure) = run(&[stream.as_bytes()], 1 << 20);
        assert_eq!(failure, None);
        assert!(!text.contains("secret"), "{text}");
        assert_eq!(text, format!("\ndata: {FILTERED}\n\n"));
    }

    #[test]
    fn a_final_event_ending_in_a_lone_cr_is_filtered() {
        let stream = format!("data: {LIST}\r\r");
        let (text, _) = run(&[stream.as_bytes()], 1 << 20);
        assert_eq!(text, format!("data: {FILTERED}\n\n"));
        // Unterminated: dropped, never passed raw.
        let stream = format!("data: {LIST}\r");
        let (text, _) = run(&[stream.as_bytes()], 1 << 20);
        assert_eq!(text, "");
    }

    #[test]
    fn unreadable_streams_end_with_the_error_and_nothing_else() {
        let not_json = b"data: {\"result\":{\"tools\":[{\"name\":\"secret\"}]},}\n\ndata: 1\n\n";
        let bad_utf8 = b": \xFF\n\ndata: {\"result\":{\"tools\":[{\"name\":\"secret\"}]}}\n\n";
        let cases: [(&[u8], StreamFailure); 3] = [
            (not_json, StreamFailure::Unfilterable),
            (bad_utf8, StreamFailure::Read(StreamError::NotUtf8)),
            (
                b"event: endpoint\ndata: http://elsewhere/x\n\n",
                StreamFailure::Endpoint,
            ),
        ];
        for (stream, want) in cases {
            let (text, failure) = run(&[stream], 1 << 20);
            assert_eq!(failure, Some(want));
            assert!(!text.contains("secret"), "{text}");
            assert!(text.contains("-32002"), "{text}");
            assert!(text.ends_with("\n\n"));
        }
    }

    #[test]
    fn an_oversized_event_ends_the_stream_and_later_chunks_pass_nothing() {
        let mut f = SseFilter::new(64);
        let big = format!("data: {LIST}");
        let out = f.push(big.as_bytes(), false, &hooks());
        assert_eq!(
            out.failure,
            Some(StreamFailure::Read(StreamError::EventTooLarge))
        );
        assert!(!String::from_utf8_lossy(&out.bytes).contains("secret"));
        assert!(f.failed());
        assert!(f.push(b"\n\ndata: 1\n\n", true, &hooks()).bytes.is_empty());
    }

    #[test]
    fn endpoint_events_are_mapped_wherever_they_come() {
        let stream = b"retry: 100\n\n: c\n\ndata: {}\n\nevent: endpoint\ndata: /ok?s=1\n\n";
        let (text, failure) = run(&[stream], 1 << 20);
        assert_eq!(failure, None);
        assert_eq!(
            text,
            "retry: 100\n\n: c\n\ndata: {}\n\nevent: endpoint\ndata: /public?s=1\n\n"
        );
    }

    #[test]
    fn without_a_policy_data_passes_but_framing_is_the_gateways() {
        let mut f = SseFilter::new(1 << 20);
        let h = Hooks {
            keep: None,
            ..hooks()
        };
        let stream = format!("data: {LIST}\r\n\r\ndata: not json\n\n");
        let out = f.push(stream.as_bytes(), true, &h);
        assert_eq!(
            String::from_utf8(out.bytes).unwrap(),
            format!("data: {LIST}\n\ndata: not json\n\n")
        );
    }

    #[test]
    fn withheld_notifications_and_priming_events() {
        let stream = b"id: 0\ndata: \n\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/resources/updated\",\"params\":{\"uri\":\"s://x\"}}\n\n";
        let (text, failure) = run(&[stream], 1 << 20);
        assert_eq!(failure, None);
        assert_eq!(text, "id: 0\ndata: \n\n");
    }
}

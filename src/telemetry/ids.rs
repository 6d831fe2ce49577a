//! Request ids and W3C trace context: what joins a request's access line, its audit
//! events, its error body and the upstream's own logs.
//!
//! Owns the rules for accepting a client's `X-Request-Id` and `traceparent`, and the
//! generation of new ones; free of I/O (the upstream request gets the result where it
//! is prepared, `proxy::headers`).
//!
//! - `X-Request-Id`: one header of 1 to [`MAX_REQUEST_ID`] characters from a set that
//!   cannot break a log line or a JSON string (letters, digits, `-_.:/+=@`) is kept;
//!   anything else (none, several, too long, other characters) is replaced by a new id
//!   (32 lower-case hex digits).
//! - `traceparent`: one header in the W3C Trace Context format (version `00` exactly; a
//!   later version read by its first four fields, as the recommendation says) is kept
//!   byte for byte, with `tracestate`: the gateway makes no span of its own. A missing
//!   or malformed one starts a new trace (random trace id and parent id, flags `00`:
//!   the gateway does not decide that the trace is sampled), and the `tracestate` of the
//!   broken one is dropped (it belonged to a trace that is not continued).

use std::cell::Cell;

use http::{HeaderMap, HeaderValue};

/// The longest `X-Request-Id` kept from a client; UUIDs (36) and the ids of the usual
/// load balancers fit with room to spare.
pub const MAX_REQUEST_ID: usize = 128;

pub static X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");
pub static TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
pub static TRACESTATE: http::HeaderName = http::HeaderName::from_static("tracestate");

/// The ids of one request, as they go upstream and into the logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestIds {
    /// The `X-Request-Id` value (the client's, or a new one).
    pub request_id: HeaderValue,
    /// 32 lower-case hex digits: the trace the request belongs to.
    trace_id: [u8; 32],
    /// The `traceparent` the gateway started, when the client's was missing or broken:
    /// the upstream gets it in place of the client's, and no `tracestate`.
    pub new_traceparent: Option<HeaderValue>,
    /// The client's `X-Request-Id` was missing or not kept: the upstream gets
    /// `request_id` in place of every one the client sent.
    pub new_request_id: bool,
}

impl RequestIds {
    /// The request id as text (always ASCII: see [`valid_request_id`]).
    pub fn request_id(&self) -> &str {
        self.request_id.to_str().unwrap_or("")
    }

    /// The trace id as text.
    pub fn trace_id(&self) -> &str {
        std::str::from_utf8(&self.trace_id).unwrap_or("")
    }
}

/// Reads the client's id headers and decides what the request carries on. Nothing is
/// written to the client's request head: the upstream request gets the ids where it is
/// prepared (`proxy::headers`), which costs a fraction of editing Pingora's head.
pub fn assign(headers: &HeaderMap) -> RequestIds {
    let kept_id = single(headers, &X_REQUEST_ID).filter(|v| valid_request_id(v.as_bytes()));
    let (request_id, new_request_id) = match kept_id {
        Some(value) => (value.clone(), false),
        None => {
            let mut hex_id = [0u8; 32];
            hex_into(&random_bytes::<16>(), &mut hex_id);
            (header_value(&hex_id), true)
        }
    };
    let kept_trace = single(headers, &TRACEPARENT).and_then(|v| trace_id_of(v.as_bytes()));
    let (trace_id, new_traceparent) = match kept_trace {
        Some(trace_id) => (trace_id, None),
        None => {
            // 00-<32 hex trace id>-<16 hex parent id>-00
            let mut value = *b"00-00000000000000000000000000000000-0000000000000000-00";
            hex_into(&nonzero(random_bytes::<16>()), &mut value[3..35]);
            hex_into(&nonzero(random_bytes::<8>()), &mut value[36..52]);
            let mut trace_id = [0u8; 32];
            trace_id.copy_from_slice(&value[3..35]);
            (trace_id, Some(header_value(&value)))
        }
    };
    RequestIds {
        request_id,
        trace_id,
        new_traceparent,
        new_request_id,
    }
}

/// The one value of `name`, if the request has exactly one.
fn single<'h>(headers: &'h HeaderMap, name: &http::HeaderName) -> Option<&'h HeaderValue> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => Some(value),
        _ => None,
    }
}

/// True for an id the gateway keeps: 1 to [`MAX_REQUEST_ID`] characters, each a letter,
/// a digit or one of `-_.:/+=@`.
pub fn valid_request_id(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=@".contains(b))
}

/// The trace id of a well-formed `traceparent`, or `None`.
///
/// `version-traceid-parentid-flags`, lower-case hex: version `00` is exactly 55
/// characters; a higher version (not `ff`) is at least that, and anything after the
/// flags starts with `-`. Neither id may be all zeros.
pub fn trace_id_of(value: &[u8]) -> Option<[u8; 32]> {
    if value.len() < 55 {
        return None;
    }
    let lower_hex = |s: &[u8]| s.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let (version, trace, parent, flags) =
        (&value[0..2], &value[3..35], &value[36..52], &value[53..55]);
    let dashes = value[2] == b'-' && value[35] == b'-' && value[52] == b'-';
    let version_ok = lower_hex(version)
        && version != b"ff"
        && if version == b"00" {
            value.len() == 55
        } else {
            value.len() == 55 || value[55] == b'-'
        };
    let ids_ok = lower_hex(trace)
        && lower_hex(parent)
        && lower_hex(flags)
        && trace.iter().any(|b| *b != b'0')
        && parent.iter().any(|b| *b != b'0');
    if !(dashes && version_ok && ids_ok) {
        return None;
    }
    let mut id = [0u8; 32];
    id.copy_from_slice(trace);
    Some(id)
}

/// Writes `bytes` as lower-case hex into `out` (twice as long).
fn hex_into(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0x0f)];
    }
}

/// Hex digits and dashes are always a valid header value.
fn header_value(bytes: &[u8]) -> HeaderValue {
    HeaderValue::from_bytes(bytes).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// W3C ids must not be all zeros; the generator makes that all but impossible, this
/// makes it impossible.
fn nonzero<const N: usize>(mut bytes: [u8; N]) -> [u8; N] {
    if bytes.iter().all(|b| *b == 0) {
        bytes[N - 1] = 1;
    }
    bytes
}

thread_local! {
    /// A per-thread generator state, seeded once from the operating system.
    static STATE: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 8];
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_ok() {
        return u64::from_le_bytes(bytes);
    }
    // No system randomness: the clock and a stack address still make ids that differ
    // between threads and processes (ids are for joining logs, not secrets).
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let here = &bytes as *const _ as u64;
    nanos ^ here.rotate_left(32)
}

/// SplitMix64: fast, and every 64-bit output of a thread differs from the others. Ids
/// need to be unique and spread out, not unpredictable: nothing trusts them.
fn next_u64() -> u64 {
    STATE.with(|state| {
        let s = state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        state.set(s);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    })
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    for chunk in out.chunks_mut(8) {
        let word = next_u64().to_le_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        h
    }

    const PARENT: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_well_formed_request_id_and_traceparent_are_kept_as_sent() {
        let a = assign(&headers(&[
            ("x-request-id", b"f81d4fae-7dec-11d0-a765-00a0c91e6bf6"),
            ("traceparent", PARENT),
        ]));
        assert_eq!(a.request_id(), "f81d4fae-7dec-11d0-a765-00a0c91e6bf6");
        assert!(!a.new_request_id);
        assert_eq!(a.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(a.new_traceparent, None);
    }

    #[test]
    fn missing_ids_are_generated_unique_and_well_formed() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let a = assign(&HeaderMap::new());
            assert!(a.new_request_id);
            let id = a.request_id().to_string();
            assert_eq!(id.len(), 32);
            assert!(valid_request_id(id.as_bytes()));
            let parent = a.new_traceparent.clone().unwrap();
            let trace = trace_id_of(parent.as_bytes()).expect("a valid traceparent");
            assert_eq!(&trace[..], a.trace_id().as_bytes());
            assert!(parent.as_bytes().ends_with(b"-00"), "not sampled by us");
            assert!(seen.insert(id), "request ids repeat");
            assert!(seen.insert(a.trace_id().to_string()), "trace ids repeat");
        }
    }

    #[test]
    fn request_ids_that_could_break_a_log_or_mislead_are_replaced() {
        let long = [b'a'; MAX_REQUEST_ID + 1];
        let at_limit = [b'a'; MAX_REQUEST_ID];
        for bad in [
            &b"has space"[..],
            b"quote\"",
            b"back\\slash",
            b"semi;colon",
            b"\xc3\xa9t\xc3\xa9",
            b"",
            &long[..],
        ] {
            let a = assign(&headers(&[("x-request-id", bad)]));
            assert!(a.new_request_id, "{bad:?} kept");
            assert_ne!(a.request_id.as_bytes(), bad);
        }
        assert!(!assign(&headers(&[("x-request-id", &at_limit)])).new_request_id);
        // Two ids: which one would a log reader believe? Neither.
        let two = assign(&headers(&[("x-request-id", b"a"), ("x-request-id", b"b")]));
        assert!(two.new_request_id);
    }

    #[test]
    fn traceparent_follows_the_w3c_format_to_the_letter() {
        let trace = Some(*b"4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(trace_id_of(PARENT), trace);
        // A later version: read by its first four fields, more may follow a dash.
        assert_eq!(
            trace_id_of(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more"),
            trace
        );
        for bad in [
            &b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more"[..],
            b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01more",
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            b"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            b"0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"",
        ] {
            assert_eq!(trace_id_of(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn a_broken_or_repeated_traceparent_starts_a_new_trace() {
        for h in [
            headers(&[("traceparent", b"00-nonsense"), ("tracestate", b"a=b")]),
            headers(&[("traceparent", PARENT), ("traceparent", PARENT)]),
        ] {
            let a = assign(&h);
            let new = a.new_traceparent.clone().expect("a new trace");
            assert_ne!(new.as_bytes(), PARENT);
            assert_ne!(a.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        }
    }
}

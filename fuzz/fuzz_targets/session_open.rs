//! Sealed session ids (`mcp::session`). On every input:
//! - `open` of the input as a sealed id, under any binding, time and maximum age, is an
//!   `Err` (nothing but a seal made with the keys opens), and never panics;
//! - a genuine seal made from the input (upstream id, issue time, binding, clock and
//!   maximum age all taken from it) opens exactly as the model below says: the right
//!   id for the right route and caller, the right refusal otherwise, with no arithmetic
//!   overflow on any time;
//! - changing any one character of a genuine seal makes it an `Err`;
//! - `SessionKeys::decode_key` of the input never panics.
#![no_main]

use std::sync::LazyLock;
use std::time::Duration;

use drawbridge::mcp::session::{
    open, seal, Binding, SealError, SessionKeys, UnsealError, MAX_CLOCK_SKEW_SECS,
    MAX_UPSTREAM_ID_LEN, RESEAL_AFTER_SECS,
};
use libfuzzer_sys::fuzz_target;

static KEYS: LazyLock<SessionKeys> = LazyLock::new(|| {
    let key = |seed: u8| {
        (0u8..32)
            .map(|i| i.wrapping_mul(7).wrapping_add(seed))
            .collect()
    };
    SessionKeys::new(vec![("k1".into(), key(1)), ("k2".into(), key(2))]).expect("keys")
});

const BINDINGS: [Binding<'static>; 4] = [
    Binding {
        route: "everything",
        issuer: "https://idp.example/realms/corp",
        subject: "alice",
        client_id: Some("desktop"),
    },
    Binding {
        route: "elsewhere",
        issuer: "https://idp.example/realms/corp",
        subject: "alice",
        client_id: Some("desktop"),
    },
    Binding {
        route: "everything",
        issuer: "https://idp.example/realms/corp",
        subject: "mallory",
        client_id: Some("desktop"),
    },
    Binding {
        route: "everything",
        issuer: "https://idp.example/realms/corp",
        subject: "alice",
        client_id: None,
    },
];

fn u64_at(data: &[u8], at: usize) -> u64 {
    let mut bytes = [0u8; 8];
    for (i, b) in data.iter().skip(at).take(8).enumerate() {
        bytes[i] = *b;
    }
    u64::from_be_bytes(bytes)
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = SessionKeys::decode_key(&text);
    for binding in &BINDINGS {
        for max_age in [None, Some(Duration::ZERO), Some(Duration::from_secs(3600))] {
            for now in [0, 1_750_000_000, u64::MAX] {
                let opened = open(&KEYS, &text, binding, now, max_age);
                assert!(opened.is_err(), "{text:?} opened without being sealed");
            }
        }
    }

    // A genuine seal: 8 bytes issue time, 8 bytes clock, 1 byte choices, 4 bytes maximum
    // age, then the upstream id.
    let issued_at = u64_at(data, 0);
    let now = u64_at(data, 8);
    let choices = data.get(16).copied().unwrap_or(0);
    let max_age = (choices & 0x80 != 0).then(|| Duration::from_secs(u64_at(data, 17) >> 32));
    let upstream_id = String::from_utf8_lossy(data.get(21..).unwrap_or_default());
    let sealed = match seal(&KEYS, &upstream_id, &BINDINGS[0], issued_at) {
        Ok(sealed) => sealed,
        Err(SealError::UpstreamIdTooLong) => {
            assert!(upstream_id.len() > MAX_UPSTREAM_ID_LEN);
            return;
        }
        Err(SealError::UpstreamIdInvalid) => {
            assert!(
                upstream_id.is_empty() || !upstream_id.bytes().all(|b| (0x21..=0x7e).contains(&b))
            );
            return;
        }
        Err(e) => panic!("sealing failed: {e:?}"),
    };
    let binding_index = usize::from(choices & 0x03);
    let expected = match binding_index {
        0 => {
            let too_new = issued_at > now.saturating_add(MAX_CLOCK_SKEW_SECS);
            let too_old = max_age.is_some_and(|m| now.saturating_sub(issued_at) > m.as_secs());
            if max_age.is_some() && (too_new || too_old) {
                Err(UnsealError::Expired)
            } else {
                Ok(upstream_id.to_string())
            }
        }
        1 => Err(UnsealError::WrongRoute),
        _ => Err(UnsealError::WrongIdentity),
    };
    let opened = open(&KEYS, &sealed, &BINDINGS[binding_index], now, max_age);
    assert_eq!(
        opened
            .as_ref()
            .map(|o| o.upstream_id.clone())
            .map_err(|e| *e),
        expected,
        "{sealed}"
    );
    if let Ok(opened) = opened {
        let young = issued_at <= now && now - issued_at < RESEAL_AFTER_SECS;
        assert_eq!(opened.reusable, young);
    }

    // One character changed, at a place and to a value the input chooses.
    let at = usize::from(choices) * sealed.len() / 256;
    let replacement = data.get(21).copied().unwrap_or(b'A');
    let mut altered = sealed.clone().into_bytes();
    if altered[at] != replacement {
        altered[at] = replacement;
        let altered = String::from_utf8_lossy(&altered);
        let opened = open(&KEYS, &altered, &BINDINGS[0], now, None);
        assert!(opened.is_err(), "{altered} opened after a change at {at}");
    }
});

use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;

use super::*;

const NOW: u64 = 1_750_000_000;
const UPSTREAM: &str = "3f2a9c1e-5b7d-4e8f-a0b1-c2d3e4f5a6b7";

/// A key with 32 distinct byte values, different for each seed.
fn key_bytes(seed: u8) -> Vec<u8> {
    (0u8..32)
        .map(|i| i.wrapping_mul(7).wrapping_add(seed))
        .collect()
}

fn keys(ids: &[(&str, u8)]) -> SessionKeys {
    let list = ids
        .iter()
        .map(|(id, seed)| (id.to_string(), key_bytes(*seed)))
        .collect();
    SessionKeys::new(list).expect("test keys are valid")
}

fn alice() -> Binding<'static> {
    Binding {
        route: "everything",
        issuer: "https://idp.example.com/realms/corp",
        subject: "alice",
        client_id: Some("claude-desktop"),
    }
}

fn sealed_for_alice(keys: &SessionKeys) -> String {
    seal(keys, UPSTREAM, &alice(), NOW).expect("seals")
}

#[test]
fn round_trip_restores_the_upstream_id() {
    let keys = keys(&[("k1", 1)]);
    let sealed = sealed_for_alice(&keys);
    assert_ne!(sealed, UPSTREAM);
    assert!(!sealed.contains(UPSTREAM));
    assert!(sealed.starts_with("v1.k1."), "{sealed}");
    assert_eq!(
        unseal(&keys, &sealed, &alice(), NOW, None).as_deref(),
        Ok(UPSTREAM)
    );
}

#[test]
fn round_trip_without_client_id() {
    let keys = keys(&[("k1", 1)]);
    let binding = Binding {
        client_id: None,
        ..alice()
    };
    let sealed = seal(&keys, UPSTREAM, &binding, NOW).expect("seals");
    assert_eq!(
        unseal(&keys, &sealed, &binding, NOW, None).as_deref(),
        Ok(UPSTREAM)
    );
}

#[test]
fn longest_upstream_id_round_trips_within_the_size_limit() {
    let keys = keys(&[("a-sixteen-char-k", 1)]);
    let upstream = "~".repeat(MAX_UPSTREAM_ID_LEN);
    let sealed = seal(&keys, &upstream, &alice(), NOW).expect("seals");
    assert!(sealed.len() <= MAX_SEALED_LEN, "{}", sealed.len());
    assert_eq!(unseal(&keys, &sealed, &alice(), NOW, None), Ok(upstream));
}

#[test]
fn every_byte_is_visible_ascii() {
    let keys = keys(&[("k1", 1)]);
    for upstream in [UPSTREAM, "!", "~~~~", "a\"b\\c<>{}", &"x".repeat(300)] {
        for _ in 0..20 {
            let sealed = seal(&keys, upstream, &alice(), NOW).expect("seals");
            assert!(
                sealed.bytes().all(|b| (0x21..=0x7E).contains(&b)),
                "{sealed:?}"
            );
        }
    }
}

#[test]
fn two_seals_of_the_same_input_differ() {
    let keys = keys(&[("k1", 1)]);
    let a = sealed_for_alice(&keys);
    let b = sealed_for_alice(&keys);
    assert_ne!(a, b);
    assert_eq!(
        unseal(&keys, &a, &alice(), NOW, None).as_deref(),
        Ok(UPSTREAM)
    );
    assert_eq!(
        unseal(&keys, &b, &alice(), NOW, None).as_deref(),
        Ok(UPSTREAM)
    );
}

#[test]
fn another_caller_is_wrong_identity() {
    let keys = keys(&[("k1", 1)]);
    let sealed = sealed_for_alice(&keys);
    let others = [
        Binding {
            subject: "bob",
            ..alice()
        },
        Binding {
            issuer: "https://idp.example.com/realms/other",
            ..alice()
        },
        Binding {
            client_id: Some("other-agent"),
            ..alice()
        },
        Binding {
            client_id: None,
            ..alice()
        },
        Binding {
            client_id: Some(""),
            ..alice()
        },
        // Field boundaries are not ambiguous: moving characters between fields is
        // another identity.
        Binding {
            issuer: "https://idp.example.com/realms/corpa",
            subject: "lice",
            ..alice()
        },
    ];
    for other in others {
        assert_eq!(
            unseal(&keys, &sealed, &other, NOW, None),
            Err(UnsealError::WrongIdentity),
            "{other:?}"
        );
    }
}

#[test]
fn no_client_and_empty_client_are_different_identities() {
    let keys = keys(&[("k1", 1)]);
    let none = Binding {
        client_id: None,
        ..alice()
    };
    let empty = Binding {
        client_id: Some(""),
        ..alice()
    };
    let sealed = seal(&keys, UPSTREAM, &none, NOW).expect("seals");
    assert_eq!(
        unseal(&keys, &sealed, &empty, NOW, None),
        Err(UnsealError::WrongIdentity)
    );
}

/// The proxy binds seals with digests computed once per route and per verified token;
/// they must be exactly what a `Binding` of the same names gives, either way round.
#[test]
fn precomputed_digests_are_the_binding() {
    let keys = keys(&[("k1", 1)]);
    let b = alice();
    let precomputed = Digests {
        route: RouteDigest::of(b.route),
        identity: IdentityDigest::of(b.issuer, b.subject, b.client_id),
    };
    assert_eq!(precomputed, Digests::from(&b));
    let sealed = seal(&keys, UPSTREAM, precomputed, NOW).expect("seals");
    assert_eq!(
        unseal(&keys, &sealed, &alice(), NOW, None).as_deref(),
        Ok(UPSTREAM)
    );
    let sealed = sealed_for_alice(&keys);
    assert_eq!(
        unseal(&keys, &sealed, precomputed, NOW, None).as_deref(),
        Ok(UPSTREAM)
    );
    // Each part binds: another route's or another caller's digest does not open it.
    let other_route = Digests {
        route: RouteDigest::of("github"),
        ..precomputed
    };
    assert_eq!(
        unseal(&keys, &sealed, other_route, NOW, None),
        Err(UnsealError::WrongRoute)
    );
    let other_caller = Digests {
        identity: IdentityDigest::of(b.issuer, "bob", b.client_id),
        ..precomputed
    };
    assert_eq!(
        unseal(&keys, &sealed, other_caller, NOW, None),
        Err(UnsealError::WrongIdentity)
    );
}

/// The anonymous caller of a public route is no issuer, subject or client, which is not
/// the same as an empty client id.
#[test]
fn anonymous_identity_is_the_empty_binding() {
    assert_eq!(
        IdentityDigest::anonymous(),
        IdentityDigest::of("", "", None)
    );
    assert_ne!(
        IdentityDigest::anonymous(),
        IdentityDigest::of("", "", Some(""))
    );
}

#[test]
fn another_route_is_wrong_route() {
    let keys = keys(&[("k1", 1)]);
    let sealed = sealed_for_alice(&keys);
    let other = Binding {
        route: "github",
        ..alice()
    };
    assert_eq!(
        unseal(&keys, &sealed, &other, NOW, None),
        Err(UnsealError::WrongRoute)
    );
    // The route is checked first: another route and another caller is still WrongRoute.
    let both = Binding {
        route: "github",
        subject: "bob",
        ..alice()
    };
    assert_eq!(
        unseal(&keys, &sealed, &both, NOW, None),
        Err(UnsealError::WrongRoute)
    );
}

/// A refreshed access token yields the same principal (issuer, subject, client): the
/// binding is rebuilt from the new token's claims, in new allocations, and still opens
/// the session. No token bytes take part in sealing, so there is nothing else to match.
#[test]
fn refreshed_token_for_the_same_caller_keeps_the_session() {
    let keys = keys(&[("k1", 1)]);
    let sealed = sealed_for_alice(&keys);
    let (issuer, subject, client) = (
        String::from("https://idp.example.com/realms/corp"),
        String::from("alice"),
        String::from("claude-desktop"),
    );
    let after_refresh = Binding {
        route: "everything",
        issuer: &issuer,
        subject: &subject,
        client_id: Some(&client),
    };
    assert_eq!(
        unseal(&keys, &sealed, &after_refresh, NOW + 3600, None).as_deref(),
        Ok(UPSTREAM)
    );
}

#[test]
fn changing_any_single_character_is_refused() {
    let keys = keys(&[("k1", 1)]);
    let sealed = sealed_for_alice(&keys);
    let bytes = sealed.as_bytes();
    for position in 0..bytes.len() {
        for replacement in 0x21u8..=0x7E {
            if replacement == bytes[position] {
                continue;
            }
            let mut altered = bytes.to_vec();
            altered[position] = replacement;
            let altered = String::from_utf8(altered).expect("ascii");
            let result = unseal(&keys, &altered, &alice(), NOW, None);
            assert!(
                result.is_err(),
                "position {position} -> {:?} opened",
                replacement as char
            );
        }
    }
}

#[test]
fn changing_payload_characters_is_tampered_or_malformed() {
    let keys = keys(&[("k1", 1)]);
    let sealed = sealed_for_alice(&keys);
    let mut tampered = 0;
    for position in "v1.k1.".len()..sealed.len() {
        let mut altered = sealed.clone().into_bytes();
        altered[position] = if altered[position] == b'A' {
            b'B'
        } else {
            b'A'
        };
        let altered = String::from_utf8(altered).expect("ascii");
        match unseal(&keys, &altered, &alice(), NOW, None) {
            Err(UnsealError::Tampered) => tampered += 1,
            Err(UnsealError::Malformed) => {}
            other => panic!("position {position}: {other:?}"),
        }
    }
    // Only the last character can fail decoding (non-canonical trailing bits).
    assert!(tampered >= sealed.len() - "v1.k1.".len() - 1);
}

#[test]
fn truncated_is_refused() {
    let keys = keys(&[("k1", 1)]);
    let sealed = sealed_for_alice(&keys);
    for len in 0..sealed.len() {
        assert!(
            unseal(&keys, &sealed[..len], &alice(), NOW, None).is_err(),
            "opened with {len} characters"
        );
    }
    // Cut inside the clear prefix, or short of nonce + header + tag: not ours at all.
    for len in [0, 1, 2, 3, 5, 6, 7, 20, 100, 130] {
        assert_eq!(
            unseal(&keys, &sealed[..len], &alice(), NOW, None),
            Err(UnsealError::Malformed),
            "{len} characters"
        );
    }
    // Cut at a whole base64 group: decodes cleanly, but the tag no longer matches.
    let prefix = "v1.k1.".len();
    let groups = (sealed.len() - prefix - 1) / 4;
    assert_eq!(
        unseal(&keys, &sealed[..prefix + 4 * groups], &alice(), NOW, None),
        Err(UnsealError::Tampered)
    );
}

#[test]
fn shapes_that_were_never_sealed_are_malformed() {
    let keys = keys(&[("k1", 1)]);
    let sealed = sealed_for_alice(&keys);
    let payload = &sealed["v1.k1.".len()..];
    let cases = [
        String::new(),
        UPSTREAM.to_string(),
        format!("v2.k1.{payload}"),
        format!("V1.k1.{payload}"),
        format!("v1..{payload}"),
        format!("v1.k1.{payload}.x"),
        format!("v1.k1.{payload}="),
        format!("v1.k1!.{payload}"),
        "v1.k1".to_string(),
        "v1.k1.".to_string(),
        format!("v1.k1.{}", "A".repeat(MAX_SEALED_LEN)),
        format!("{sealed} "),
    ];
    for case in cases {
        assert_eq!(
            unseal(&keys, &case, &alice(), NOW, None),
            Err(UnsealError::Malformed),
            "{case:?}"
        );
    }
}

#[test]
fn unknown_key_id_is_unknown_key() {
    let sealed = sealed_for_alice(&keys(&[("k1", 1)]));
    let others = keys(&[("k2", 1)]);
    assert_eq!(
        unseal(&others, &sealed, &alice(), NOW, None),
        Err(UnsealError::UnknownKey)
    );
}

#[test]
fn key_id_is_authenticated() {
    // The same secret under another id: relabelling a sealed id does not open it.
    let sealed = sealed_for_alice(&keys(&[("k1", 1)]));
    let relabelled = sealed.replacen("v1.k1.", "v1.k2.", 1);
    assert_eq!(
        unseal(&keys(&[("k2", 1)]), &relabelled, &alice(), NOW, None),
        Err(UnsealError::Tampered)
    );
}

#[test]
fn another_key_with_the_same_id_is_tampered() {
    let sealed = sealed_for_alice(&keys(&[("k1", 1)]));
    assert_eq!(
        unseal(&keys(&[("k1", 2)]), &sealed, &alice(), NOW, None),
        Err(UnsealError::Tampered)
    );
}

#[test]
fn rotation_first_key_seals_all_keys_open() {
    let old = keys(&[("a", 1)]);
    let sealed_old = sealed_for_alice(&old);

    let rotated = keys(&[("b", 2), ("a", 1)]);
    assert_eq!(
        unseal(&rotated, &sealed_old, &alice(), NOW, None).as_deref(),
        Ok(UPSTREAM)
    );
    let sealed_new = sealed_for_alice(&rotated);
    assert!(sealed_new.starts_with("v1.b."), "{sealed_new}");
    assert_eq!(
        unseal(&rotated, &sealed_new, &alice(), NOW, None).as_deref(),
        Ok(UPSTREAM)
    );

    let retired = keys(&[("b", 2)]);
    assert_eq!(
        unseal(&retired, &sealed_old, &alice(), NOW, None),
        Err(UnsealError::UnknownKey)
    );
    assert_eq!(
        unseal(&retired, &sealed_new, &alice(), NOW, None).as_deref(),
        Ok(UPSTREAM)
    );
}

#[test]
fn max_age_expires_old_ids() {
    let keys = keys(&[("k1", 1)]);
    let sealed = sealed_for_alice(&keys);
    let hour = Some(Duration::from_secs(3600));
    assert_eq!(
        unseal(&keys, &sealed, &alice(), NOW + 3600, hour).as_deref(),
        Ok(UPSTREAM)
    );
    assert_eq!(
        unseal(&keys, &sealed, &alice(), NOW + 3601, hour),
        Err(UnsealError::Expired)
    );
    // Without a maximum age, age does not matter.
    assert_eq!(
        unseal(&keys, &sealed, &alice(), NOW + 10 * 365 * 86_400, None).as_deref(),
        Ok(UPSTREAM)
    );
}

#[test]
fn ids_from_the_future_beyond_the_skew_are_expired() {
    let keys = keys(&[("k1", 1)]);
    let sealed = sealed_for_alice(&keys);
    let hour = Some(Duration::from_secs(3600));
    assert_eq!(
        unseal(&keys, &sealed, &alice(), NOW - MAX_CLOCK_SKEW_SECS, hour).as_deref(),
        Ok(UPSTREAM)
    );
    assert_eq!(
        unseal(
            &keys,
            &sealed,
            &alice(),
            NOW - MAX_CLOCK_SKEW_SECS - 1,
            hour
        ),
        Err(UnsealError::Expired)
    );
    assert_eq!(
        unseal(&keys, &sealed, &alice(), 0, None).as_deref(),
        Ok(UPSTREAM)
    );
}

#[test]
fn identity_is_checked_before_age() {
    let keys = keys(&[("k1", 1)]);
    let sealed = sealed_for_alice(&keys);
    let bob = Binding {
        subject: "bob",
        ..alice()
    };
    assert_eq!(
        unseal(
            &keys,
            &sealed,
            &bob,
            NOW + 7200,
            Some(Duration::from_secs(60))
        ),
        Err(UnsealError::WrongIdentity)
    );
}

#[test]
fn upstream_ids_that_cannot_be_sealed() {
    let keys = keys(&[("k1", 1)]);
    let cases = [
        (
            "x".repeat(MAX_UPSTREAM_ID_LEN + 1),
            SealError::UpstreamIdTooLong,
        ),
        (String::new(), SealError::UpstreamIdInvalid),
        ("has space".to_string(), SealError::UpstreamIdInvalid),
        ("tab\t".to_string(), SealError::UpstreamIdInvalid),
        ("line\r\nbreak".to_string(), SealError::UpstreamIdInvalid),
        ("del\x7f".to_string(), SealError::UpstreamIdInvalid),
        ("é".to_string(), SealError::UpstreamIdInvalid),
    ];
    for (upstream, expected) in cases {
        assert_eq!(
            seal(&keys, &upstream, &alice(), NOW),
            Err(expected),
            "{upstream:?}"
        );
    }
}

#[test]
fn reasons_are_metric_labels() {
    let all = [
        (UnsealError::Malformed, "malformed"),
        (UnsealError::UnknownKey, "unknown_key"),
        (UnsealError::Tampered, "tampered"),
        (UnsealError::WrongRoute, "wrong_route"),
        (UnsealError::WrongIdentity, "wrong_identity"),
        (UnsealError::Expired, "expired"),
    ];
    for (error, label) in all {
        assert_eq!(error.reason(), label);
    }
}

/// (key id, key bytes) as a test writes them.
type KeyList = Vec<(&'static str, Vec<u8>)>;

fn key_error(list: KeyList) -> String {
    let list = list
        .into_iter()
        .map(|(id, k)| (id.to_string(), k))
        .collect();
    match SessionKeys::new(list) {
        Ok(_) => panic!("keys accepted"),
        Err(message) => message,
    }
}

#[test]
fn key_validation() {
    let good = key_bytes(1);
    let cases: Vec<(KeyList, &str)> = vec![
        (vec![], "no session keys"),
        (vec![("k1", good[..31].to_vec())], "31 bytes, expected 32"),
        (vec![("k1", [good.clone(), vec![9]].concat())], "33 bytes"),
        (vec![("k1", vec![])], "0 bytes"),
        (vec![("k1", vec![0; 32])], "all zero"),
        (vec![("k1", vec![b'a'; 32])], "not random"),
        (
            vec![("k1", b"abcdefgabcdefgabcdefgabcdefgabcd".to_vec())],
            "not random",
        ),
        (
            vec![("k1", good.clone()), ("k1", key_bytes(2))],
            "used twice",
        ),
        (vec![("", good.clone())], "must be 1 to 16"),
        (vec![("seventeen-chars-x", good.clone())], "must be 1 to 16"),
        (vec![("k.1", good.clone())], "must be 1 to 16"),
        (vec![("k 1", good.clone())], "must be 1 to 16"),
        (
            vec![("k1", good.clone()), ("k/2", key_bytes(2))],
            "session key #2: the id",
        ),
        (
            vec![("a", good.clone()), ("b", good.clone())],
            "same secret",
        ),
    ];
    for (list, expected) in cases {
        let message = key_error(list);
        assert!(message.contains(expected), "{message:?} lacks {expected:?}");
    }
}

#[test]
fn key_errors_and_debug_never_show_key_material() {
    let short = key_bytes(1)[..31].to_vec();
    let weak = b"abcdefgabcdefgabcdefgabcdefgabcd".to_vec();
    for key in [short, weak] {
        let message = key_error(vec![("k1", key.clone())]);
        for shown in [
            STANDARD.encode(&key),
            format!("{key:?}"),
            String::from_utf8_lossy(&key).into_owned(),
            key.iter().map(|b| format!("{b:02x}")).collect(),
        ] {
            assert!(!message.contains(&shown), "{message:?}");
        }
    }
    let pasted = STANDARD.encode(key_bytes(1));
    let message = SessionKeys::new(vec![(pasted.clone(), key_bytes(1))])
        .err()
        .unwrap_or_default();
    assert!(message.contains("the id must be"), "{message:?}");
    assert!(!message.contains(&pasted), "{message:?}");
    let debug = format!("{:?}", keys(&[("k1", 1)]));
    assert!(debug.contains("k1"), "{debug}");
    assert!(!debug.contains(&format!("{:?}", key_bytes(1))), "{debug}");
    assert!(!debug.contains(&STANDARD.encode(key_bytes(1))), "{debug}");
}

#[test]
fn decode_key_accepts_both_alphabets_with_or_without_padding() {
    // 0xfb 0xff in the key makes the two alphabets differ ('+/' vs '-_').
    let mut key = key_bytes(3);
    key[0] = 0xfb;
    key[1] = 0xff;
    key[2] = 0xbf;
    for engine in [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD] {
        let text = engine.encode(&key);
        assert_eq!(SessionKeys::decode_key(&text).as_ref(), Ok(&key), "{text}");
        let with_newline = format!("  {text}\n");
        assert_eq!(SessionKeys::decode_key(&with_newline).as_ref(), Ok(&key));
    }
    assert!(STANDARD.encode(&key).contains(['+', '/']));
    assert!(URL_SAFE.encode(&key).contains(['-', '_']));
}

#[test]
fn decode_key_errors_never_echo_the_input() {
    let inputs = [
        "not base64 at all: hunter2hunter2".to_string(),
        STANDARD.encode([7u8; 16]),
        STANDARD.encode([7u8; 48]),
        "c2VjcmV0LXNlY3JldA+_".to_string(),
        String::new(),
    ];
    for input in inputs {
        let message = SessionKeys::decode_key(&input).expect_err("refused");
        assert!(input.is_empty() || !message.contains(&input), "{message:?}");
        assert!(!message.contains("hunter2"), "{message:?}");
        assert!(!message.contains("c2VjcmV0"), "{message:?}");
    }
    assert_eq!(
        SessionKeys::decode_key(&STANDARD.encode([7u8; 16])),
        Err("session key decodes to 16 bytes, expected 32".to_string())
    );
}

#[test]
fn generated_keys_decode_to_32_bytes_and_are_accepted() {
    let a = generate_key().expect("random");
    let b = generate_key().expect("random");
    assert_ne!(a, b);
    assert_eq!(STANDARD.decode(&a).expect("standard base64").len(), KEY_LEN);
    let decoded = SessionKeys::decode_key(&a).expect("decodes");
    assert_eq!(decoded.len(), KEY_LEN);
    let keys = SessionKeys::new(vec![("gen".to_string(), decoded)]).expect("accepted");
    let sealed = sealed_for_alice(&keys);
    assert_eq!(
        unseal(&keys, &sealed, &alice(), NOW, None).as_deref(),
        Ok(UPSTREAM)
    );
}

#[test]
fn only_young_ids_sealed_with_the_current_key_are_reusable() {
    let current = keys(&[("k1", 1)]);
    let sealed = sealed_for_alice(&current);
    let reusable = |keys: &SessionKeys, now: u64| {
        let opened = open(keys, &sealed, &alice(), now, None).expect("opens");
        assert_eq!(opened.upstream_id, UPSTREAM);
        opened.reusable
    };
    assert!(reusable(&current, NOW));
    assert!(reusable(&current, NOW + RESEAL_AFTER_SECS - 1));
    assert!(
        !reusable(&current, NOW + RESEAL_AFTER_SECS),
        "old enough to refresh"
    );
    assert!(!reusable(&current, NOW - 1), "issued in the future");
    let rotating = keys(&[("k2", 2), ("k1", 1)]);
    assert!(
        !reusable(&rotating, NOW),
        "sealed with a key being rotated out"
    );
}

#[test]
fn key_checks_name_the_secret_without_revealing_it() {
    let a = key_check(&key_bytes(1));
    assert_eq!(a.len(), 8);
    assert!(a.bytes().all(|b| b.is_ascii_hexdigit()), "{a}");
    // The same secret always gives the same check (replicas compare them) ...
    assert_eq!(a, key_check(&key_bytes(1)));
    // ... another secret another one, also for a one-bit difference.
    assert_ne!(a, key_check(&key_bytes(2)));
    let mut flipped = key_bytes(1);
    flipped[31] ^= 1;
    assert_ne!(a, key_check(&flipped));
    // Not a slice of the secret itself.
    let hex: String = key_bytes(1).iter().map(|b| format!("{b:02x}")).collect();
    assert!(!hex.contains(&a));
}

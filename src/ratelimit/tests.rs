use super::*;

const SEC: Nanos = 1_000_000_000;

fn limit(requests: u32, per: Duration, burst: u32, key: KeyKind) -> RateLimit {
    RateLimit {
        requests,
        per,
        burst,
        key,
        max_keys: DEFAULT_MAX_KEYS,
    }
}

/// Takes one at a time from a fresh bucket at `now` until refused: how many passed.
fn drain(g: &Gcra, tat: &mut Nanos, now: Nanos) -> (u32, Wait) {
    let mut passed = 0;
    loop {
        match g.take(*tat, now, 1) {
            Ok(new) => {
                *tat = new;
                passed += 1;
            }
            Err(wait) => return (passed, wait),
        }
        assert!(passed <= 1_000, "never refused");
    }
}

#[test]
fn a_full_bucket_lets_burst_through_at_once_then_refills_at_the_rate() {
    // 60 a minute, 20 at once: one comes back every second.
    let g = Gcra::new(60, Duration::from_secs(60), 20);
    let mut tat = 0;
    let start = 100 * SEC;
    let (passed, wait) = drain(&g, &mut tat, start);
    assert_eq!(passed, 20);
    assert_eq!(wait, Wait::For(SEC));
    // Half a second later: still nothing; at one second, exactly one.
    assert_eq!(g.take(tat, start + SEC / 2, 1), Err(Wait::For(SEC / 2)));
    let (passed, _) = drain(&g, &mut tat, start + SEC);
    assert_eq!(passed, 1);
    // Ten seconds later: ten more, not twenty.
    let (passed, _) = drain(&g, &mut tat, start + 11 * SEC);
    assert_eq!(passed, 10);
    // After a long idle time the bucket is full again, never fuller.
    let (passed, _) = drain(&g, &mut tat, start + 3600 * SEC);
    assert_eq!(passed, 20);
}

#[test]
fn burst_equal_to_requests_allows_the_whole_period_at_once() {
    let g = Gcra::new(5, Duration::from_secs(60), 5);
    let mut tat = 0;
    let (passed, wait) = drain(&g, &mut tat, 7 * SEC);
    assert_eq!(passed, 5);
    assert_eq!(wait, Wait::For(12 * SEC));
    assert_eq!(g.refill(), 60 * SEC);
}

#[test]
fn several_at_once_fit_together_or_not_at_all() {
    let g = Gcra::new(10, Duration::from_secs(10), 3);
    let now = 50 * SEC;
    let tat = g.take(0, now, 2).unwrap();
    // One left: two more do not fit, and the refusal took nothing.
    assert_eq!(g.take(tat, now, 2), Err(Wait::For(SEC)));
    let tat = g.take(tat, now, 1).unwrap();
    assert!(g.take(tat, now, 1).is_err());
    // More than the burst never fits.
    assert_eq!(g.take(0, now, 4), Err(Wait::Never));
    assert_eq!(Wait::Never.retry_after_secs(), None);
    // Giving back restores what was taken.
    let back = g.give_back(tat, 3);
    assert_eq!(g.take(back, now, 3).map(|_| ()), Ok(()));
}

#[test]
fn retry_after_is_whole_seconds_rounded_up_and_never_zero() {
    assert_eq!(Wait::For(1).retry_after_secs(), Some(1));
    assert_eq!(Wait::For(SEC).retry_after_secs(), Some(1));
    assert_eq!(Wait::For(SEC + 1).retry_after_secs(), Some(2));
    assert_eq!(Wait::For(2 * SEC - 1).retry_after_secs(), Some(2));
    assert_eq!(Wait::For(0).retry_after_secs(), Some(1));
    assert_eq!(Wait::For(u64::MAX).retry_after_secs(), Some(u32::MAX));
    // 7 a minute: one back every 8.57 s, told as 9.
    let g = Gcra::new(7, Duration::from_secs(60), 1);
    let tat = g.take(0, SEC, 1).unwrap();
    let wait = g.take(tat, SEC, 1).unwrap_err();
    assert_eq!(wait.retry_after_secs(), Some(9));
}

#[test]
fn a_clock_going_backwards_never_locks_a_key_out_for_longer_than_a_refill() {
    let g = Gcra::new(1, Duration::from_secs(10), 1);
    let tat = g.take(0, 1_000 * SEC, 1).unwrap();
    // Read at an earlier time (another clock, a jump back): the bucket is treated as
    // just emptied, not as empty for 990 s.
    assert_eq!(g.take(tat, 10 * SEC, 1), Err(Wait::For(10 * SEC)));
    // A state far in the future (garbage) is bounded the same way.
    assert_eq!(g.take(u64::MAX, 0, 1), Err(Wait::For(10 * SEC)));
}

#[test]
fn huge_periods_and_times_stay_exact_and_never_overflow() {
    // Once in (practically) forever: the second request waits about 146 years, told
    // as the longest Retry-After there is.
    let g = Gcra::new(1, Duration::MAX, 1);
    let tat = g.take(0, SEC, 1).unwrap();
    let wait = g.take(tat, 2 * SEC, 1).unwrap_err();
    assert!(
        matches!(wait, Wait::For(ns) if ns > 100 * 365 * 86_400 * SEC),
        "{wait:?}"
    );
    assert_eq!(wait.retry_after_secs(), Some(u32::MAX));
    // The largest configurable limit, at the end of time.
    let g = Gcra::new(MAX_REQUESTS, MAX_PER, MAX_REQUESTS);
    assert!(g.take(0, u64::MAX, MAX_REQUESTS).is_ok(), "no overflow");
    let late = MAX_PERIOD;
    let tat = g.take(0, late, MAX_REQUESTS).unwrap();
    assert!(g.take(tat, late, 1).is_err(), "exact after 146 years");
    // A burst above `requests` holds one period at most.
    let g = Gcra::new(2, Duration::from_secs(60), 1_000);
    let (passed, _) = drain(&g, &mut 0, SEC);
    assert_eq!(passed, 2);
    // Zero counts (refused by the configuration) do not divide by zero.
    let g = Gcra::new(0, Duration::ZERO, 0);
    assert!(g.take(0, 5, 1).is_ok());
}

#[test]
fn keys_of_each_kind_separate_what_they_should() {
    let alice = Who {
        issuer: Some("https://idp"),
        subject: Some("alice"),
        client_id: Some("cli"),
        address: Some("192.0.2.1".parse().unwrap()),
    };
    let bob = Who {
        subject: Some("bob"),
        address: Some("192.0.2.2".parse().unwrap()),
        ..alice
    };
    let other_issuer = Who {
        issuer: Some("https://other"),
        ..alice
    };
    let by = |kind| Limiter::new(limit(1, Duration::from_secs(60), 1, kind));
    let subject = by(KeyKind::Subject);
    assert_ne!(subject.key(&alice), subject.key(&bob));
    assert_ne!(subject.key(&alice), subject.key(&other_issuer));
    let client = by(KeyKind::Client);
    assert_eq!(client.key(&alice), client.key(&bob), "one client id");
    let anonymous = |address| Who {
        address: Some(address),
        ..Who::default()
    };
    let a = anonymous("198.51.100.1".parse().unwrap());
    let b = anonymous("198.51.100.2".parse().unwrap());
    assert_ne!(
        client.key(&a),
        client.key(&b),
        "addresses without a client id"
    );
    let route = by(KeyKind::Route);
    assert_eq!(route.key(&alice), route.key(&a));
    // A client id spelled like an address is not that address.
    let spelled = Who {
        client_id: Some("198.51.100.1"),
        ..Who::default()
    };
    assert_ne!(client.key(&spelled), client.key(&a));
}

#[test]
fn a_limiter_counts_each_key_apart() {
    let l = Limiter::new(limit(2, Duration::from_secs(3600), 2, KeyKind::Subject));
    let who = |s| Who {
        subject: Some(s),
        ..Who::default()
    };
    let now = SEC;
    assert!(l.take(&who("a"), 1, now).is_ok());
    assert!(l.take(&who("a"), 1, now).is_ok());
    let refused = l.take(&who("a"), 1, now).unwrap_err();
    assert_eq!(refused.judged, Judged::Own);
    assert_eq!(refused.wait.retry_after_secs(), Some(1800));
    assert!(l.take(&who("b"), 2, now).is_ok());
    assert_eq!(l.tracked(), 2);
    // A take given back is available again.
    let c = l.take(&who("c"), 2, now).unwrap();
    assert!(l.take(&who("c"), 1, now).is_err());
    l.give_back(c);
    assert!(l.take(&who("c"), 2, now).is_ok());
}

#[test]
fn at_the_key_cap_new_keys_share_one_bucket_and_known_keys_keep_theirs() {
    let mut rl = limit(1, Duration::from_secs(3600), 1, KeyKind::Subject);
    rl.max_keys = 2;
    let l = Limiter::new(rl);
    let who = |s| Who {
        subject: Some(s),
        ..Who::default()
    };
    let now = 10 * SEC;
    assert!(l.take(&who("a"), 1, now).is_ok());
    assert!(l.take(&who("b"), 1, now).is_ok());
    assert_eq!(l.tracked(), 2);
    // New keys past the cap: the first takes the shared bucket, the next is refused.
    let c = l.take(&who("c"), 1, now).unwrap();
    assert!(Limiter::overflowed(&c));
    let d = l.take(&who("d"), 1, now).unwrap_err();
    assert_eq!(d.judged, Judged::Overflow);
    // Known keys keep their own state (a is used up, not reset).
    assert_eq!(l.take(&who("a"), 1, now).unwrap_err().judged, Judged::Own);
    assert_eq!(l.tracked(), 2, "memory stays bounded");
    // Once tracked keys are full again they are forgotten to make room (a sweep).
    let later = now + 3600 * SEC;
    let e = l.take(&who("e"), 1, later).unwrap();
    assert!(!Limiter::overflowed(&e));
    assert_eq!(l.tracked(), 1);
}

#[test]
fn sweeps_run_at_most_once_a_second() {
    let g = Gcra::new(1, Duration::from_secs(1), 1);
    let t = Table::new(g, 1);
    assert!(t.take(1, 1, 0).0.is_ok());
    // Key 1 is full again at 1 s; at 0.5 s the map is full and key 2 overflows.
    assert_eq!(t.take(2, 1, SEC / 2).1, Judged::Overflow);
    // At 1.2 s key 1 is full, but the sweep of 0.5 s was too recent: overflow again.
    assert_eq!(t.take(3, 1, SEC + SEC / 5).1, Judged::Overflow);
    // From 1.5 s the sweep runs and makes room.
    assert_eq!(t.take(4, 1, SEC + SEC / 2).1, Judged::Own);
}

#[test]
fn concurrent_takes_never_pass_more_than_the_burst() {
    let l = std::sync::Arc::new(Limiter::new(limit(
        50,
        Duration::from_secs(3600),
        50,
        KeyKind::Route,
    )));
    let passed = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (l, passed) = (l.clone(), passed.clone());
            std::thread::spawn(move || {
                for _ in 0..100 {
                    if l.take(&Who::default(), 1, SEC).is_ok() {
                        passed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(passed.load(std::sync::atomic::Ordering::Relaxed), 50);
}

#[test]
fn the_clock_moves_forward() {
    let a = now();
    let b = now();
    assert!(b >= a);
}

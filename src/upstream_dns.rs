//! Upstream addresses that follow DNS: each upstream host name is resolved in the
//! background and again every `dns.refresh`, so a Kubernetes Service (or any name) that
//! moves is followed, and a name that does not resolve makes only its own routes answer
//! 503 instead of stopping the gateway.
//!
//! Owns the table of host names and their current addresses ([`Addresses`]) and the rule
//! for taking a new answer ([`Slot::update`]): keep the address in use while the answer
//! still holds it (connections in the pool stay useful), else take the answer's first;
//! a failed lookup keeps the last good address (a DNS outage does not take a working
//! upstream away) and is reported. The lookups themselves are the caller's (the
//! supervisor, on the runtime; start-up and reloads, on a blocking thread), so this module
//! does no I/O. IP literals are never looked up.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use arc_swap::ArcSwapOption;

/// One upstream host and port, and what is known of its address.
#[derive(Debug)]
pub struct Slot {
    pub host: String,
    pub port: u16,
    address: ArcSwapOption<SocketAddr>,
    /// Why the last lookup failed, while it does (for `/readyz` and the log).
    failure: Mutex<Option<String>>,
}

/// What an update changed, for the log and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// First address, or a new one (the old one is no longer in the answer).
    Moved,
    /// The answer still holds the address in use.
    Same,
    /// The lookup failed; the last good address (if any) stays in use.
    Failed,
}

impl Change {
    /// Metric label (`drawbridge_upstream_dns_lookups_total{result}`).
    pub fn label(self) -> &'static str {
        match self {
            Change::Moved => "moved",
            Change::Same => "same",
            Change::Failed => "failed",
        }
    }
}

impl Slot {
    fn new(host: &str, port: u16) -> Slot {
        let literal = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .ok()
            .map(|ip| Arc::new(SocketAddr::new(ip, port)));
        Slot {
            host: host.to_string(),
            port,
            address: ArcSwapOption::new(literal),
            failure: Mutex::new(None),
        }
    }

    /// The address in use, or `None` while the name has never resolved.
    pub fn address(&self) -> Option<SocketAddr> {
        self.address.load().as_deref().copied()
    }

    /// True for a host given as an IP address: there is nothing to look up.
    pub fn is_literal(&self) -> bool {
        self.host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok()
    }

    /// Why the last lookup failed, while the name does not resolve.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }

    /// Takes the result of a lookup (see the module's rule).
    pub fn update(&self, answer: Result<Vec<SocketAddr>, String>) -> Change {
        let current = self.address();
        let answer = answer.and_then(|addrs| {
            if addrs.is_empty() {
                Err("the name has no address".to_string())
            } else {
                Ok(addrs)
            }
        });
        let (change, failure) = match answer {
            Ok(addrs) => match current {
                Some(addr) if addrs.contains(&addr) => (Change::Same, None),
                _ => {
                    self.address.store(Some(Arc::new(addrs[0])));
                    (Change::Moved, None)
                }
            },
            Err(why) => (Change::Failed, Some(why)),
        };
        if let Ok(mut f) = self.failure.lock() {
            *f = failure;
        }
        change
    }
}

/// Every upstream host the configurations in use name, shared by them: a reload keeps
/// the addresses of the hosts it still names, so it never waits for DNS to serve them.
#[derive(Debug, Default)]
pub struct Addresses {
    slots: RwLock<HashMap<(String, u16), Arc<Slot>>>,
}

impl Addresses {
    /// The slot of `host:port`, made (unresolved, unless `host` is an IP address) if it
    /// is new.
    pub fn slot(&self, host: &str, port: u16) -> Arc<Slot> {
        let key = (host.to_string(), port);
        if let Some(slot) = self.slots.read().ok().and_then(|s| s.get(&key).cloned()) {
            return slot;
        }
        let mut slots = match self.slots.write() {
            Ok(slots) => slots,
            Err(poisoned) => poisoned.into_inner(),
        };
        slots
            .entry(key)
            .or_insert_with(|| Arc::new(Slot::new(host, port)))
            .clone()
    }

    /// The slots to look up: every host that is a name.
    pub fn names(&self) -> Vec<Arc<Slot>> {
        self.slots
            .read()
            .map(|s| s.values().filter(|s| !s.is_literal()).cloned().collect())
            .unwrap_or_default()
    }

    /// Forgets hosts no configuration names any more (`in_use`: host and port).
    pub fn retain(&self, in_use: &[(String, u16)]) {
        if let Ok(mut slots) = self.slots.write() {
            slots.retain(|key, _| in_use.contains(key));
        }
    }
}

/// Looks a name up with the system's resolver. Blocking: call it on a blocking thread.
pub fn lookup_blocking(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    use std::net::ToSocketAddrs;
    (host, port)
        .to_socket_addrs()
        .map(Iterator::collect)
        .map_err(|e| e.to_string())
}

/// [`lookup_blocking`] given at most `timeout` (the system's resolver has no timeout of
/// its own to set): the lookup runs on a thread of its own, left to finish alone when it
/// takes longer. Blocking.
pub fn lookup_within(host: &str, port: u16, timeout: Duration) -> Result<Vec<SocketAddr>, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let name = host.to_string();
    let spawned = std::thread::Builder::new()
        .name("dns".into())
        .spawn(move || {
            let _ = tx.send(lookup_blocking(&name, port));
        });
    if let Err(e) = spawned {
        return Err(format!("cannot start a lookup: {e}"));
    }
    rx.recv_timeout(timeout)
        .unwrap_or_else(|_| Err(format!("no answer within {} ms", timeout.as_millis())))
}

/// Looks up every name in `addresses` that has no address yet (start-up, and the hosts
/// a reload names for the first time), each within `timeout`. Blocking. Returns the
/// hosts that did not resolve, with why.
pub fn resolve_new(addresses: &Addresses, timeout: Duration) -> Vec<(String, String)> {
    let mut failed = Vec::new();
    for slot in addresses.names() {
        if slot.address().is_some() {
            continue;
        }
        if slot.update(lookup_within(&slot.host, slot.port, timeout)) == Change::Failed {
            failed.push((slot.host.clone(), slot.failure().unwrap_or_default()));
        }
    }
    failed
}

/// `validate`'s check: one warning per upstream host name that does not resolve from
/// here now (the gateway would start, and those routes would answer 503). Blocking.
pub fn unresolved_warnings(config: &crate::config::Config) -> Vec<String> {
    let addresses = Addresses::default();
    for route in &config.routes {
        addresses.slot(&route.upstream.host, route.upstream.port);
    }
    resolve_new(&addresses, config.dns.timeout)
        .into_iter()
        .map(|(host, why)| {
            let routes: Vec<&str> = config
                .routes
                .iter()
                .filter(|r| r.upstream.host == host)
                .map(|r| r.name.as_str())
                .collect();
            format!(
                "upstream host `{host}` does not resolve from here ({why}): route(s) {} would answer 503 until it does",
                routes.join(", ")
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_ip_literal_has_its_address_from_the_start_and_is_never_looked_up() {
        let table = Addresses::default();
        let v4 = table.slot("127.0.0.1", 3001);
        assert_eq!(v4.address(), Some(addr("127.0.0.1:3001")));
        let v6 = table.slot("[::1]", 3001);
        assert_eq!(v6.address(), Some(addr("[::1]:3001")));
        let name = table.slot("everything.default.svc", 80);
        assert_eq!(name.address(), None, "unresolved until looked up");
        let names: Vec<String> = table.names().iter().map(|s| s.host.clone()).collect();
        assert_eq!(names, ["everything.default.svc"]);
    }

    #[test]
    fn the_address_in_use_stays_while_the_answer_holds_it() {
        let slot = Addresses::default().slot("svc", 80);
        assert_eq!(
            slot.update(Ok(vec![addr("10.0.0.1:80"), addr("10.0.0.2:80")])),
            Change::Moved
        );
        assert_eq!(slot.address(), Some(addr("10.0.0.1:80")));
        // Round-robin DNS reorders its answer: no move.
        assert_eq!(
            slot.update(Ok(vec![addr("10.0.0.2:80"), addr("10.0.0.1:80")])),
            Change::Same
        );
        assert_eq!(slot.address(), Some(addr("10.0.0.1:80")));
        // The Service moved.
        assert_eq!(slot.update(Ok(vec![addr("10.0.0.9:80")])), Change::Moved);
        assert_eq!(slot.address(), Some(addr("10.0.0.9:80")));
    }

    #[test]
    fn a_failed_lookup_keeps_the_last_good_address_and_says_why() {
        let slot = Addresses::default().slot("svc", 80);
        assert_eq!(slot.update(Err("no such host".into())), Change::Failed);
        assert_eq!(slot.address(), None);
        assert_eq!(slot.failure().as_deref(), Some("no such host"));
        slot.update(Ok(vec![addr("10.0.0.1:80")]));
        assert_eq!(slot.failure(), None);
        assert_eq!(slot.update(Ok(vec![])), Change::Failed, "an empty answer");
        assert_eq!(slot.address(), Some(addr("10.0.0.1:80")), "kept");
        assert!(slot.failure().is_some());
    }

    #[test]
    fn configurations_share_slots_and_forget_hosts_no_longer_named() {
        let table = Addresses::default();
        let a = table.slot("svc", 80);
        a.update(Ok(vec![addr("10.0.0.1:80")]));
        // A reload naming the same host gets the same slot, resolved already.
        assert_eq!(table.slot("svc", 80).address(), Some(addr("10.0.0.1:80")));
        assert!(Arc::ptr_eq(&a, &table.slot("svc", 80)));
        table.slot("other", 80);
        table.retain(&[("svc".into(), 80)]);
        assert_eq!(table.names().len(), 1);
    }

    #[test]
    fn new_names_are_resolved_once_and_failures_named() {
        let table = Addresses::default();
        let local = table.slot("localhost", 80);
        table.slot("drawbridge-test.invalid", 80);
        table.slot("127.0.0.1", 80);
        let failed = resolve_new(&table, Duration::from_secs(5));
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert_eq!(failed[0].0, "drawbridge-test.invalid");
        assert!(local.address().is_some_and(|a| a.ip().is_loopback()));
    }

    #[test]
    fn localhost_resolves_and_an_invalid_name_does_not() {
        assert!(lookup_blocking("localhost", 80)
            .unwrap()
            .iter()
            .all(|a| a.ip().is_loopback()));
        // RFC 6761: `.invalid` never resolves.
        assert!(lookup_blocking("drawbridge-test.invalid", 80).is_err());
    }
}

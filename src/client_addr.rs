//! Who the client is, by address: the TCP peer, or — when the peer is a proxy the
//! configuration trusts (`trusted_proxies`) — the address that proxy reports in
//! `X-Forwarded-For`.
//!
//! Owns CIDR parsing and the walk through `X-Forwarded-For`; free of I/O. The result is
//! for logs, the log budget's "same source" and the key of a `key: client` rate limit
//! without a client id: nothing is authorized by address.
//!
//! The walk goes from the right (the entry the nearest proxy wrote) to the left, past
//! every trusted address, and stops at the first untrusted one: entries further left
//! were written by that untrusted party and may be anything. An entry that does not read
//! as an address stops the walk at the last trusted hop, which is then the client as far
//! as anyone can tell.

use std::net::IpAddr;

use http::HeaderValue;

/// An address block: `10.0.0.0/8`, `2001:db8::/32`, or one address (`192.0.2.7`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `ADDRESS[/PREFIX]`; the address's bits past the prefix must be zero (a
    /// typo such as `10.1.2.3/8` is refused rather than read as a wider block).
    pub fn parse(text: &str) -> Result<Cidr, &'static str> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| "not an IP address or CIDR block, such as `10.0.0.0/8`")?;
        let network = network.to_canonical();
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.trim().parse::<u8>() {
                Ok(n) if n <= max && p.trim().bytes().all(|b| b.is_ascii_digit()) => n,
                _ => return Err("the prefix length must be 0 to 32 (IPv4) or 0 to 128 (IPv6)"),
            },
        };
        let cidr = Cidr { network, prefix };
        if !cidr.contains(network) || bits(network) & !mask(max, prefix) != 0 {
            return Err("the address has bits set past the prefix length");
        }
        Ok(cidr)
    }

    /// The prefix length: 0 for a block of every address of its family.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// True when `addr` (IPv4-mapped IPv6 read as IPv4) is in the block.
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = addr.to_canonical();
        let max = match (self.network, addr) {
            (IpAddr::V4(_), IpAddr::V4(_)) => 32,
            (IpAddr::V6(_), IpAddr::V6(_)) => 128,
            _ => return false,
        };
        let m = mask(max, self.prefix);
        bits(addr) & m == bits(self.network) & m
    }
}

fn bits(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The top `prefix` bits of a `width`-bit address.
fn mask(width: u8, prefix: u8) -> u128 {
    let all: u128 = if width == 32 {
        u128::from(u32::MAX)
    } else {
        u128::MAX
    };
    let host_bits = u32::from(width - prefix.min(width));
    all.checked_shl(host_bits).unwrap_or(0) & all
}

/// The blocks whose `X-Forwarded-For` the gateway believes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    pub fn new(blocks: Vec<Cidr>) -> TrustedProxies {
        TrustedProxies(blocks)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn trusts(&self, addr: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(addr))
    }

    /// The client's address: `peer` itself unless it is trusted, else the walk through
    /// the `X-Forwarded-For` values (in the order they arrived) described above.
    pub fn client<'h>(
        &self,
        peer: IpAddr,
        forwarded_for: impl DoubleEndedIterator<Item = &'h HeaderValue>,
    ) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        let mut last_trusted = peer;
        for value in forwarded_for.rev() {
            let Ok(text) = value.to_str() else {
                return last_trusted;
            };
            for entry in text.rsplit(',') {
                match entry_address(entry) {
                    Some(addr) if self.trusts(addr) => last_trusted = addr,
                    Some(addr) => return addr,
                    None => return last_trusted,
                }
            }
        }
        last_trusted
    }
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`192.0.2.1:443`,
/// `[2001:db8::1]:443`) as some proxies write it.
fn entry_address(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim_matches([' ', '\t']);
    if let Ok(addr) = entry.parse::<IpAddr>() {
        return Some(addr.to_canonical());
    }
    entry
        .parse::<std::net::SocketAddr>()
        .ok()
        .map(|s| s.ip().to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted(blocks: &[&str]) -> TrustedProxies {
        TrustedProxies::new(blocks.iter().map(|b| Cidr::parse(b).unwrap()).collect())
    }

    fn client(t: &TrustedProxies, peer: &str, xff: &[&str]) -> String {
        let values: Vec<HeaderValue> = xff
            .iter()
            .map(|v| HeaderValue::from_str(v).unwrap())
            .collect();
        t.client(peer.parse().unwrap(), values.iter()).to_string()
    }

    #[test]
    fn blocks_parse_strictly() {
        assert_eq!(
            Cidr::parse("10.0.0.0/8").unwrap(),
            Cidr {
                network: "10.0.0.0".parse().unwrap(),
                prefix: 8
            }
        );
        assert!(Cidr::parse("192.0.2.7")
            .unwrap()
            .contains("192.0.2.7".parse().unwrap()));
        assert!(!Cidr::parse("192.0.2.7")
            .unwrap()
            .contains("192.0.2.8".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("203.0.113.9".parse().unwrap()));
        assert!(Cidr::parse("::/0")
            .unwrap()
            .contains("2001:db8::1".parse().unwrap()));
        assert!(Cidr::parse("2001:db8::/32")
            .unwrap()
            .contains("2001:db8:ffff::1".parse().unwrap()));
        for bad in [
            "10.1.2.3/8",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/-1",
            "10.0.0.0/+8",
            "host/8",
            "",
            "10.0.0.0/",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn families_do_not_mix_but_mapped_addresses_are_ipv4() {
        let v4 = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(!v4.contains("2001:db8::1".parse().unwrap()));
        assert!(v4.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!Cidr::parse("::/0")
            .unwrap()
            .contains("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let t = trusted(&["10.0.0.0/8"]);
        assert_eq!(client(&t, "203.0.113.9", &["198.51.100.1"]), "203.0.113.9");
        assert_eq!(
            client(&TrustedProxies::default(), "10.0.0.1", &["198.51.100.1"]),
            "10.0.0.1"
        );
    }

    #[test]
    fn the_walk_stops_at_the_first_untrusted_address_from_the_right() {
        let t = trusted(&["10.0.0.0/8"]);
        // The client forged the first entry; the load balancer appended the real one.
        assert_eq!(
            client(&t, "10.0.0.5", &["1.1.1.1, 198.51.100.7"]),
            "198.51.100.7"
        );
        // Two trusted hops: past both.
        assert_eq!(
            client(&t, "10.0.0.5", &["198.51.100.7, 10.0.0.9"]),
            "198.51.100.7"
        );
        // Several headers read as one list, in order.
        assert_eq!(
            client(&t, "10.0.0.5", &["1.1.1.1", "198.51.100.7", "10.0.0.9"]),
            "198.51.100.7"
        );
        // Ports as some proxies write them.
        assert_eq!(
            client(&t, "10.0.0.5", &["[2001:db8::7]:443"]),
            "2001:db8::7"
        );
        assert_eq!(
            client(&t, "10.0.0.5", &["198.51.100.7:5555"]),
            "198.51.100.7"
        );
        // All trusted: the leftmost.
        assert_eq!(client(&t, "10.0.0.5", &["10.9.9.9, 10.0.0.9"]), "10.9.9.9");
        // No header: the proxy itself.
        assert_eq!(client(&t, "10.0.0.5", &[]), "10.0.0.5");
    }

    #[test]
    fn garbage_stops_the_walk_at_the_last_trusted_hop() {
        let t = trusted(&["10.0.0.0/8"]);
        assert_eq!(client(&t, "10.0.0.5", &["unknown, 10.0.0.9"]), "10.0.0.9");
        assert_eq!(
            client(&t, "10.0.0.5", &["198.51.100.7, _hidden"]),
            "10.0.0.5"
        );
        assert_eq!(client(&t, "10.0.0.5", &[""]), "10.0.0.5");
    }
}

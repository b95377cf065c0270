//! Which IP addresses are not on the public internet (the IANA special-purpose address
//! registries, RFC 6890): strictmx must not connect there for a stranger, such as a recipient
//! domain whose DNS names a TLSRPT `https:` collector. Resolving and connecting is left to
//! `strictmx-resolve`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is not a public internet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecialRange {
    /// `0.0.0.0/8` (RFC 791 "this network"), `::` (RFC 4291 §2.5.2).
    Unspecified,
    /// `127.0.0.0/8` (RFC 1122 §3.2.1.3), `::1` (RFC 4291 §2.5.3).
    Loopback,
    /// RFC 1918, `fc00::/7` (RFC 4193), `fec0::/10` (RFC 3879), `64:ff9b:1::/48` (RFC 8215).
    Private,
    /// `100.64.0.0/10` (RFC 6598): carrier-grade NAT.
    Shared,
    /// `169.254.0.0/16` (RFC 3927), `fe80::/10` (RFC 4291 §2.5.6).
    LinkLocal,
    /// RFC 5737, `2001:db8::/32` (RFC 3849), `3fff::/20` (RFC 9637).
    Documentation,
    /// `198.18.0.0/15` (RFC 2544), `2001:2::/48` (RFC 5180).
    Benchmarking,
    /// `224.0.0.0/4` (RFC 5771), `ff00::/8` (RFC 4291 §2.7).
    Multicast,
    /// Everything else not globally reachable: `240.0.0.0/4` with the broadcast address
    /// (RFC 1112, RFC 919), `192.0.0.0/24` and `2001::/23` (RFC 6890), the 6to4 relay anycast
    /// `192.88.99.0/24` (RFC 7526), IPv4-compatible `::/96` (RFC 4291 §2.5.5.1) and the
    /// discard prefix `100::/64` (RFC 6666).
    Reserved,
}

impl SpecialRange {
    pub fn as_str(self) -> &'static str {
        match self {
            SpecialRange::Unspecified => "unspecified",
            SpecialRange::Loopback => "loopback",
            SpecialRange::Private => "private",
            SpecialRange::Shared => "shared (carrier-grade NAT)",
            SpecialRange::LinkLocal => "link-local",
            SpecialRange::Documentation => "documentation",
            SpecialRange::Benchmarking => "benchmarking",
            SpecialRange::Multicast => "multicast",
            SpecialRange::Reserved => "reserved",
        }
    }
}

impl fmt::Display for SpecialRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The special-purpose range `ip` lies in, or `None` for a public internet address. IPv6
/// forms that carry an IPv4 address (mapped, NAT64, 6to4) are judged by that address.
pub fn special_range(ip: IpAddr) -> Option<SpecialRange> {
    match ip {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => special_v6(v6),
    }
}

fn special_v4(ip: Ipv4Addr) -> Option<SpecialRange> {
    let [a, b, c, _] = ip.octets();
    let range = match (a, b, c) {
        (0, ..) => SpecialRange::Unspecified,
        (127, ..) => SpecialRange::Loopback,
        (10, ..) | (172, 16..=31, _) | (192, 168, _) => SpecialRange::Private,
        (100, 64..=127, _) => SpecialRange::Shared,
        (169, 254, _) => SpecialRange::LinkLocal,
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => SpecialRange::Documentation,
        (198, 18..=19, _) => SpecialRange::Benchmarking,
        (224..=239, ..) => SpecialRange::Multicast,
        (240..=255, ..) | (192, 0, 0) | (192, 88, 99) => SpecialRange::Reserved,
        _ => return None,
    };
    Some(range)
}

fn special_v6(ip: Ipv6Addr) -> Option<SpecialRange> {
    let s = ip.segments();
    let embedded = |high: u16, low: u16| {
        let [a, b] = high.to_be_bytes();
        let [c, d] = low.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    if ip.is_unspecified() {
        return Some(SpecialRange::Unspecified);
    }
    if ip.is_loopback() {
        return Some(SpecialRange::Loopback);
    }
    let range = match s {
        // RFC 4291 §2.5.5.2: IPv4-mapped; RFC 6052 §2.1: the NAT64 well-known prefix.
        [0, 0, 0, 0, 0, 0xffff, high, low] | [0x64, 0xff9b, 0, 0, 0, 0, high, low] => {
            return special_v4(embedded(high, low));
        }
        // RFC 3056 §2: 6to4 carries the IPv4 address in bits 16-47.
        [0x2002, high, low, ..] => return special_v4(embedded(high, low)),
        [0, 0, 0, 0, 0, 0, ..] => SpecialRange::Reserved,
        [0x64, 0xff9b, 1, ..] => SpecialRange::Private,
        [0x100, 0, 0, 0, ..] => SpecialRange::Reserved,
        [0x2001, 0xdb8, ..] => SpecialRange::Documentation,
        [0x2001, 2, 0, ..] => SpecialRange::Benchmarking,
        [0x2001, 0..=0x1ff, ..] => SpecialRange::Reserved,
        [first, ..] if first & 0xfff0 == 0x3ff0 => SpecialRange::Documentation,
        [first, ..] if first & 0xfe00 == 0xfc00 => SpecialRange::Private,
        [first, ..] if first & 0xffc0 == 0xfe80 => SpecialRange::LinkLocal,
        [first, ..] if first & 0xffc0 == 0xfec0 => SpecialRange::Private,
        [first, ..] if first & 0xff00 == 0xff00 => SpecialRange::Multicast,
        _ => return None,
    };
    Some(range)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_purpose_ranges_follow_the_iana_registries() {
        use SpecialRange::*;
        let cases: &[(&str, &str, Option<SpecialRange>)] = &[
            ("RFC 791: this network", "0.1.2.3", Some(Unspecified)),
            ("RFC 1122: loopback", "127.77.3.1", Some(Loopback)),
            ("RFC 1918", "10.0.0.1", Some(Private)),
            ("RFC 1918", "172.16.0.1", Some(Private)),
            ("RFC 1918", "172.31.255.255", Some(Private)),
            ("RFC 1918: 172.32/16 is public", "172.32.0.1", None),
            ("RFC 1918", "192.168.1.1", Some(Private)),
            ("RFC 6598: carrier-grade NAT", "100.64.0.1", Some(Shared)),
            ("RFC 6598: ends at 100.127", "100.128.0.1", None),
            ("RFC 3927: link-local", "169.254.169.254", Some(LinkLocal)),
            ("RFC 5737: TEST-NET-1", "192.0.2.10", Some(Documentation)),
            ("RFC 5737: TEST-NET-2", "198.51.100.10", Some(Documentation)),
            ("RFC 5737: TEST-NET-3", "203.0.113.10", Some(Documentation)),
            ("RFC 2544: benchmarking", "198.19.0.1", Some(Benchmarking)),
            ("RFC 5771: multicast", "239.255.255.250", Some(Multicast)),
            ("RFC 1112: class E", "240.0.0.1", Some(Reserved)),
            ("RFC 919: broadcast", "255.255.255.255", Some(Reserved)),
            (
                "RFC 6890: IETF protocol assignments",
                "192.0.0.8",
                Some(Reserved),
            ),
            (
                "RFC 7526: 6to4 relay anycast",
                "192.88.99.1",
                Some(Reserved),
            ),
            ("a public IPv4 address", "93.184.215.14", None),
            ("RFC 4291 §2.5.2: unspecified", "::", Some(Unspecified)),
            ("RFC 4291 §2.5.3: loopback", "::1", Some(Loopback)),
            (
                "RFC 4291 §2.5.5.2: mapped loopback",
                "::ffff:127.0.0.1",
                Some(Loopback),
            ),
            (
                "RFC 4291 §2.5.5.2: mapped private",
                "::ffff:10.1.2.3",
                Some(Private),
            ),
            (
                "RFC 4291 §2.5.5.2: mapped public",
                "::ffff:93.184.215.14",
                None,
            ),
            (
                "RFC 4291 §2.5.5.1: IPv4-compatible",
                "::7f00:1",
                Some(Reserved),
            ),
            (
                "RFC 6052: NAT64 of loopback",
                "64:ff9b::7f00:1",
                Some(Loopback),
            ),
            (
                "RFC 6052: NAT64 of a public address",
                "64:ff9b::5db8:d70e",
                None,
            ),
            ("RFC 8215: local-use NAT64", "64:ff9b:1::1", Some(Private)),
            (
                "RFC 3056: 6to4 of a private address",
                "2002:c0a8:101::1",
                Some(Private),
            ),
            (
                "RFC 3056: 6to4 of a public address",
                "2002:5db8:d70e::1",
                None,
            ),
            ("RFC 6666: discard", "100::1", Some(Reserved)),
            (
                "RFC 3849: documentation",
                "2001:db8::1",
                Some(Documentation),
            ),
            ("RFC 9637: documentation", "3fff:1::1", Some(Documentation)),
            ("RFC 5180: benchmarking", "2001:2::1", Some(Benchmarking)),
            ("RFC 4380: Teredo", "2001:0:4136:e378::1", Some(Reserved)),
            ("RFC 4193: unique local", "fd12:3456::1", Some(Private)),
            ("RFC 3879: site-local", "fec0::1", Some(Private)),
            ("RFC 4291 §2.5.6: link-local", "fe80::1", Some(LinkLocal)),
            ("RFC 4291 §2.7: multicast", "ff02::1", Some(Multicast)),
            (
                "a public IPv6 address",
                "2606:2800:21f:cb07:6820:80da:af6b:8b2c",
                None,
            ),
        ];
        for (rule, ip, expected) in cases {
            let ip: IpAddr = ip.parse().expect("test address");
            assert_eq!(special_range(ip), *expected, "{rule}: {ip}");
        }
    }
}

//! Checks on `relay.trusted_networks`: the whole internet is refused; networks wider than a
//! site, or holding an address where gateways and NAT proxies sit, are warned about.
//!
//! Pure functions from a parsed network to a verdict; `validate` attaches file, line and key.
//! Who may relay at run time is decided by inbound from the validated list.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net};

/// Networks wider than these (shorter prefixes) are more than one site: IPv4 /16, IPv6 /48.
const WIDEST_IPV4: u8 = 16;
const WIDEST_IPV6: u8 = 48;

/// What is wrong with one trusted network: `Err` refuses it, the warnings are printed by
/// `check-config` and at every start and reload.
pub(crate) fn check_trusted(text: &str, net: IpNet) -> Result<Vec<String>, String> {
    let net = unmapped(net);
    if net.prefix_len() == 0 {
        return Err(format!(
            "`{text}` trusts every {} address to relay without AUTH: an open relay; list the submitters' own addresses",
            if net.addr().is_ipv4() { "IPv4" } else { "IPv6" }
        ));
    }
    let mut warnings = Vec::new();
    if is_loopback(net) {
        return Ok(warnings);
    }
    let widest = match net {
        IpNet::V4(_) => WIDEST_IPV4,
        IpNet::V6(_) => WIDEST_IPV6,
    };
    if net.prefix_len() < widest {
        warnings.push(format!(
            "`{text}` is wider than a /{widest}: every client in it may relay without AUTH; trust the submitters' own addresses"
        ));
    }
    if let Some(gateway) = gateway_like(net) {
        warnings.push(format!(
            "`{text}` contains {gateway}, where Docker bridges, VMs and routers put their gateway: clients that reach strictmx through a NAT or proxy there (Docker's userland proxy forwards IPv6 clients from it) would relay without AUTH; trust the submitters' own addresses instead (docs/operating.md)"
        ));
    }
    Ok(warnings)
}

/// An IPv4-mapped IPv6 network (`::ffff:a.b.c.d/n`, n >= 96) read as the IPv4 network it is.
fn unmapped(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => v6
            .network()
            .to_ipv4_mapped()
            .and_then(|v4| Ipv4Net::new(v4, v6.prefix_len() - 96).ok())
            .map_or(net, IpNet::V4),
        other => other,
    }
}

fn is_loopback(net: IpNet) -> bool {
    net.network().is_loopback() && net.broadcast().is_loopback()
}

/// The first gateway-like address in `net`: an address ending in `.1` in a private IPv4 range
/// (RFC 1918), or with interface identifier `::1` in a unique local IPv6 range (RFC 4193).
/// That is where Docker puts a bridge network's gateway (the first host address of its subnet),
/// and where libvirt and most routers put theirs; NAT and proxies make clients appear there.
fn gateway_like(net: IpNet) -> Option<IpAddr> {
    let candidate = match net.network() {
        IpAddr::V4(network) => {
            let first = Ipv4Addr::from((u32::from(network) & !0xff) | 1);
            Some(IpAddr::V4(first)).filter(|_| first.is_private())
        }
        IpAddr::V6(network) => {
            let first = Ipv6Addr::from((u128::from(network) & !u128::from(u64::MAX)) | 1);
            Some(IpAddr::V6(first)).filter(|_| first.is_unique_local())
        }
    }?;
    net.contains(&candidate).then_some(candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<Vec<String>, String> {
        check_trusted(text, text.parse().expect("a network"))
    }

    #[test]
    fn the_whole_internet_is_refused_in_every_spelling() {
        for text in ["0.0.0.0/0", "::/0", "::ffff:0.0.0.0/96"] {
            let error = check(text).expect_err(text);
            assert!(error.contains("open relay"), "{text}: {error}");
        }
    }

    #[test]
    fn wide_and_gateway_holding_networks_are_warned_about() {
        let rows: [(&str, &[&str]); 12] = [
            ("127.0.0.0/8", &[]),
            ("::1/128", &[]),
            ("10.20.0.32/28", &[]),
            ("172.28.0.10/32", &[]),
            ("192.0.2.0/24", &[]),
            ("10.0.0.0/8", &["wider than a /16", "contains 10.0.0.1"]),
            ("172.28.0.0/16", &["contains 172.28.0.1"]),
            ("192.168.122.0/24", &["contains 192.168.122.1"]),
            ("172.28.0.1/32", &["contains 172.28.0.1"]),
            ("::ffff:172.17.0.0/112", &["contains 172.17.0.1"]),
            ("fd00:dead:beef::/48", &["contains fd00:dead:beef::1"]),
            ("2001:db8::/32", &["wider than a /48"]),
        ];
        for (text, expected) in rows {
            let warnings = check(text).expect(text);
            assert_eq!(warnings.len(), expected.len(), "{text}: {warnings:?}");
            for (warning, part) in warnings.iter().zip(expected) {
                assert!(warning.contains(part), "{text}: {warning}");
            }
        }
    }
}

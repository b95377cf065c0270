//! Parsers for the value types the file uses: durations, sizes, addresses, networks, next hops.
//!
//! Pure functions from text to typed values; the caller attaches the location to any error.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::raw::RawSize;

/// `"30s"`, `"5m"`, `"4h"`, `"5d"`, or combinations such as `"1h 30m"`.
pub fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("`{text}` is not a duration such as \"30s\", \"5m\" or \"4h\" ({e})"))
}

/// Bytes from a plain number or a string with a unit: B, KB, MB, GB (powers of 1000) and KiB, MiB,
/// GiB (powers of 1024).
pub fn size(raw: &RawSize) -> Result<u64, String> {
    match raw {
        RawSize::Bytes(n) => u64::try_from(*n).map_err(|_| format!("{n} is not a size in bytes")),
        RawSize::Text(text) => {
            let t = text.trim();
            let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
            let (digits, unit) = t.split_at(split);
            let n: u64 = digits
                .parse()
                .map_err(|_| format!("`{text}` is not a size such as 26214400 or \"25MiB\""))?;
            let factor: u64 = match unit.trim() {
                "" | "B" => 1,
                "KB" | "kB" => 1_000,
                "MB" => 1_000_000,
                "GB" => 1_000_000_000,
                "KiB" => 1 << 10,
                "MiB" => 1 << 20,
                "GiB" => 1 << 30,
                other => {
                    return Err(format!(
                        "unknown size unit `{other}` (use B, KB, MB, GB, KiB, MiB or GiB)"
                    ));
                }
            };
            n.checked_mul(factor)
                .ok_or_else(|| format!("`{text}` is too large"))
        }
    }
}

/// A count that must be at least `min`.
pub fn count(n: i64, min: i64) -> Result<usize, String> {
    if n < min {
        return Err(format!("{n} is too small: the least allowed is {min}"));
    }
    usize::try_from(n).map_err(|_| format!("{n} is out of range"))
}

pub fn socket_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse().map_err(|_| {
        format!("`{text}` is not an address:port such as \"127.0.0.1:25\" or \"[::1]:25\"")
    })
}

pub fn ip(text: &str) -> Result<IpAddr, String> {
    text.parse()
        .map_err(|_| format!("`{text}` is not an IP address"))
}

/// A CIDR network; a bare address means just that host.
pub fn network(text: &str) -> Result<ipnet::IpNet, String> {
    if let Ok(net) = text.parse::<ipnet::IpNet>() {
        if net.trunc() != net {
            return Err(format!(
                "`{text}` has host bits set; did you mean `{}`?",
                net.trunc()
            ));
        }
        return Ok(net);
    }
    text.parse::<IpAddr>()
        .map(ipnet::IpNet::from)
        .map_err(|_| format!("`{text}` is not a network such as \"10.0.0.0/8\" or an IP address"))
}

/// A DNS domain name as used in routes and the hostname: ASCII letters, digits, hyphens and dots,
/// labels of 1 to 63 characters, returned in lowercase without a final dot.
pub fn domain(text: &str) -> Result<String, String> {
    let t = text.trim_end_matches('.').to_ascii_lowercase();
    let valid = !t.is_empty()
        && t.len() <= 253
        && t.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if valid {
        Ok(t)
    } else {
        Err(format!(
            "`{text}` is not a domain name (IDNs go in their A-label form, xn--...)"
        ))
    }
}

/// What `[[route]] domain` takes: a domain (`example.org`), its subdomains (`*.example.org`)
/// or every domain no other route takes (`*`).
pub fn route_domain(text: &str) -> Result<String, String> {
    if text == "*" {
        return Ok("*".to_owned());
    }
    if let Some(suffix) = text.strip_prefix("*.") {
        return domain(suffix).map(|suffix| format!("*.{suffix}"));
    }
    if text.contains('*') {
        return Err(format!(
            "`{text}` is not a route domain: use `example.org`, `*.example.org` (subdomains) or `*` (every other domain)"
        ));
    }
    domain(text)
}

/// A route's fixed next hop: `host`, `host:port`, `[host]:port`, `ip:port`, `[v6]:port` (port 25
/// when omitted). A host name is resolved with A/AAAA only, never through MX, with or without
/// brackets (Postfix writes `[host]` for this; both spellings mean it here).
pub fn next_hop(text: &str) -> Result<(String, u16), String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok((addr.ip().to_string(), addr.port()));
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok((ip.to_string(), 25));
    }
    let (host, port) = match text.strip_prefix('[') {
        Some(bracketed) => {
            let (inside, rest) = bracketed
                .split_once(']')
                .ok_or_else(|| format!("`{text}` opens `[` without closing it"))?;
            match rest {
                "" => (inside, None),
                _ => match rest.strip_prefix(':') {
                    Some(port) => (inside, Some(port)),
                    None => return Err(format!("`{text}`: after `]` only `:port` may follow")),
                },
            }
        }
        None => match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        },
    };
    let port = match port {
        None => 25,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("`{p}` is not a port number in `{text}`"))?,
    };
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok((ip.to_string(), port));
    }
    Ok((domain(host)?, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_accept_bytes_and_binary_and_decimal_units() {
        let table: &[(RawSize, Option<u64>)] = &[
            (RawSize::Bytes(1024), Some(1024)),
            (RawSize::Text("25MiB".into()), Some(25 << 20)),
            (RawSize::Text("10MB".into()), Some(10_000_000)),
            (RawSize::Text("512 KiB".into()), Some(512 << 10)),
            (RawSize::Text("12 parsecs".into()), None),
            (RawSize::Bytes(-1), None),
        ];
        for (raw, want) in table {
            assert_eq!(size(raw).ok(), *want, "{raw:?}");
        }
    }

    #[test]
    fn networks_reject_host_bits_and_accept_bare_addresses() {
        assert!(network("127.0.0.0/8").is_ok());
        assert_eq!(network("10.0.0.1").unwrap().to_string(), "10.0.0.1/32");
        assert!(network("10.0.0.1/8").unwrap_err().contains("10.0.0.0/8"));
        assert!(network("nonsense").is_err());
    }

    #[test]
    fn next_hops_default_to_port_25() {
        assert_eq!(
            next_hop("smtp.example.org").unwrap(),
            ("smtp.example.org".into(), 25)
        );
        assert_eq!(
            next_hop("smtp.example.org:587").unwrap(),
            ("smtp.example.org".into(), 587)
        );
        assert_eq!(
            next_hop("127.0.0.1:2526").unwrap(),
            ("127.0.0.1".into(), 2526)
        );
        assert_eq!(next_hop("[::1]:26").unwrap(), ("::1".into(), 26));
        assert!(next_hop("bad_host:25").is_err());
        assert!(next_hop("host:0").is_err());
    }

    #[test]
    fn bracketed_next_hops_name_the_host_itself_like_plain_ones() {
        let table: &[(&str, Option<(&str, u16)>)] = &[
            (
                "[smtp.provider.example]:587",
                Some(("smtp.provider.example", 587)),
            ),
            (
                "[Smtp.Provider.Example]",
                Some(("smtp.provider.example", 25)),
            ),
            ("[192.0.2.7]:2525", Some(("192.0.2.7", 2525))),
            ("[2001:db8::1]", Some(("2001:db8::1", 25))),
            ("[smtp.provider.example:587", None),
            ("[smtp.provider.example]587", None),
            ("[smtp.provider.example]:", None),
            ("[]:25", None),
        ];
        for (text, want) in table {
            let got = next_hop(text).ok();
            let want = want.map(|(h, p)| (h.to_owned(), p));
            assert_eq!(got, want, "{text}");
        }
    }

    #[test]
    fn route_domains_are_a_domain_a_subdomain_wildcard_or_the_catch_all() {
        assert_eq!(route_domain("*").unwrap(), "*");
        assert_eq!(
            route_domain("*.Partner.Example").unwrap(),
            "*.partner.example"
        );
        assert_eq!(route_domain("partner.example.").unwrap(), "partner.example");
        for bad in ["*partner.example", "a.*.example", "**", "*."] {
            assert!(route_domain(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_read_human_units() {
        assert_eq!(duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(duration("5d").unwrap(), Duration::from_secs(5 * 86400));
        assert!(duration("soon").is_err());
    }
}

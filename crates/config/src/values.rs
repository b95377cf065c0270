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

/// `host:port`, `[v6]:port` or `host` (port 25): a route's fixed next hop.
pub fn next_hop(text: &str) -> Result<(String, u16), String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok((addr.ip().to_string(), addr.port()));
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok((ip.to_string(), 25));
    }
    let (host, port) = match text.rsplit_once(':') {
        Some((h, p)) => {
            let port = p
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("`{p}` is not a port number in `{text}`"))?;
            (h, port)
        }
        None => (text, 25),
    };
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
    fn durations_read_human_units() {
        assert_eq!(duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(duration("5d").unwrap(), Duration::from_secs(5 * 86400));
        assert!(duration("soon").is_err());
    }
}

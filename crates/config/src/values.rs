//! Parsers for the value types the file uses: durations, sizes, addresses, networks, next hops,
//! moments in time.
//!
//! Pure functions from text to typed values; the caller attaches the location to any error.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use strictmx_tlsrpt::Day;

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

/// A moment as unix seconds: a date `"2027-01-31"` (the start of that day, UTC) or an RFC 3339
/// date-time `"2027-01-31T18:00:00Z"`, `"2027-01-31T18:00:00+01:00"` (RFC 3339 §5.6; a space
/// may stand for the `T`, fractions of a second are dropped).
pub fn moment(text: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "`{text}` is not a date or time: use a date such as \"2027-01-31\" (the start of that day, UTC) or an RFC 3339 time such as \"2027-01-31T18:00:00+01:00\""
        )
    };
    let (date, time) = match text.get(..10).zip(text.get(10..)) {
        Some((date, "")) => (date, None),
        Some((date, rest)) if rest.starts_with(['T', 't', ' ']) => (date, rest.get(1..)),
        _ => return Err(bad()),
    };
    let day = Day::parse(date).ok_or_else(bad)?.start_secs();
    let Some(time) = time else {
        return Ok(day);
    };
    let seconds = time_of_day(time).ok_or_else(bad)?;
    u64::try_from(i64::try_from(day).map_err(|_| bad())? + seconds).map_err(|_| bad())
}

/// `HH:MM:SS[.frac](Z|+HH:MM|-HH:MM)` as seconds since midnight UTC (may fall outside the day).
fn time_of_day(text: &str) -> Option<i64> {
    let field = |range: std::ops::Range<usize>, max: i64| {
        let digits = text.get(range)?;
        let value: i64 = digits
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| digits.parse().ok())??;
        (value <= max).then_some(value)
    };
    if text.get(2..3) != Some(":") || text.get(5..6) != Some(":") {
        return None;
    }
    // RFC 3339 §5.6 allows a leap second, 60; it counts as the next second here.
    let local = field(0..2, 23)? * 3600 + field(3..5, 59)? * 60 + field(6..8, 60)?;
    let mut rest = text.get(8..)?;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        rest = fraction.get(digits..)?;
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.get(..1)? {
                "+" => 1,
                "-" => -1,
                _ => return None,
            };
            if rest.len() != 6 || rest.get(3..4) != Some(":") {
                return None;
            }
            let hours: i64 = rest.get(1..3)?.parse().ok()?;
            let minutes: i64 = rest.get(4..6)?.parse().ok()?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            sign * (hours * 3600 + minutes * 60)
        }
    };
    Some(local - offset)
}

/// `secs` (unix seconds) as an RFC 3339 UTC time, the form [`moment`] reads back.
pub fn moment_text(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

/// The current time in unix seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_are_a_date_at_midnight_utc_or_an_rfc_3339_time() {
        // 2027-01-31T00:00:00Z
        let day = 1_801_353_600;
        let table: &[(&str, Option<u64>)] = &[
            ("2027-01-31", Some(day)),
            ("2027-01-31T00:00:00Z", Some(day)),
            ("2027-01-31t18:30:05z", Some(day + 18 * 3600 + 30 * 60 + 5)),
            ("2027-01-31 18:00:00Z", Some(day + 18 * 3600)),
            ("2027-01-31T18:00:00.25Z", Some(day + 18 * 3600)),
            ("2027-01-31T18:00:00+01:00", Some(day + 17 * 3600)),
            ("2027-01-31T00:30:00-02:30", Some(day + 3 * 3600)),
            ("2027-02-29", None),
            ("2027-1-31", None),
            ("31.01.2027", None),
            ("2027-01-31T18:00:00", None),
            ("2027-01-31T24:00:00Z", None),
            ("2027-01-31T18:00Z", None),
            ("2027-01-31T18:00:00+0100", None),
            ("2027-01-31T18:00:00.Z", None),
            ("2027-01-31T+8:00:00Z", None),
            ("next friday", None),
            ("", None),
        ];
        for (text, want) in table {
            assert_eq!(moment(text).ok(), *want, "{text}");
        }
        assert_eq!(moment_text(day), "2027-01-31T00:00:00Z");
        assert_eq!(moment(&moment_text(day + 61)).ok(), Some(day + 61));
    }

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

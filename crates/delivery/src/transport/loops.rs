//! Addresses the transport refuses to connect to before any packet is sent: one of this
//! server's own listeners (the mail would loop back to us, one durable commit per lap), and
//! the networks no MX host may be at (loopback and unspecified by default, so a hostile
//! domain cannot point its MX at services on this machine). Routes name their next hop
//! explicitly and are exempt from the second check, never from the first.

use std::net::{IpAddr, SocketAddr, UdpSocket};

use ipnet::IpNet;

/// Why an address is not connected to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The address is one this server listens on.
    OwnListener(SocketAddr),
    /// The address is in a `never_deliver_to` network.
    NeverDeliver(IpNet),
}

impl Refusal {
    pub(crate) fn reason(&self, target: SocketAddr) -> String {
        match self {
            Refusal::OwnListener(listener) => {
                format!("{target} is this server's own listener {listener}")
            }
            Refusal::NeverDeliver(net) => {
                format!("{target} is in {net}, where mail is never delivered (never_deliver_to)")
            }
        }
    }
}

/// Whether `target` may be connected to. `is_local` says whether an address belongs to this
/// machine; it is asked only for listeners bound to the unspecified address, which listen on
/// every local address.
pub(crate) fn refusal(
    target: SocketAddr,
    own_listeners: &[SocketAddr],
    never_deliver_to: &[IpNet],
    routed: bool,
    is_local: impl Fn(IpAddr) -> bool,
) -> Option<Refusal> {
    let ip = target.ip().to_canonical();
    let own = own_listeners.iter().find(|listener| {
        let bound = listener.ip().to_canonical();
        listener.port() == target.port() && (bound == ip || bound.is_unspecified() && is_local(ip))
    });
    if let Some(listener) = own {
        return Some(Refusal::OwnListener(*listener));
    }
    if routed {
        return None;
    }
    never_deliver_to
        .iter()
        .find(|net| net.contains(&ip))
        .map(|net| Refusal::NeverDeliver(*net))
}

/// Whether `ip` is an address of this machine: only those can be bound to. No packet is sent.
pub(crate) fn is_local_address(ip: IpAddr) -> bool {
    UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("socket address")
    }

    fn net(text: &str) -> IpNet {
        text.parse().expect("network")
    }

    // Issue 14 and RFC 5321 §5.1 ("the SMTP client MUST NOT ... deliver to itself"): an MX or
    // route that leads to one of our own listeners is a loop; an unspecified bind address
    // means every local address.
    #[test]
    fn own_listeners_and_never_deliver_networks_are_refused() {
        let own = [
            addr("192.0.2.10:25"),
            addr("0.0.0.0:587"),
            addr("[::]:2525"),
        ];
        let never = [net("127.0.0.0/8"), net("::1/128")];
        let local = |ip: IpAddr| ip == IpAddr::from([192, 0, 2, 10]) || ip.is_loopback();
        type Row = (&'static str, bool, Option<Refusal>);
        let rows: [Row; 9] = [
            ("192.0.2.10:25", false, Some(Refusal::OwnListener(own[0]))),
            ("192.0.2.10:25", true, Some(Refusal::OwnListener(own[0]))),
            (
                "[::ffff:192.0.2.10]:25",
                false,
                Some(Refusal::OwnListener(own[0])),
            ),
            ("192.0.2.10:587", false, Some(Refusal::OwnListener(own[1]))),
            ("127.0.0.1:2525", true, Some(Refusal::OwnListener(own[2]))),
            ("198.51.100.1:587", false, None),
            ("127.0.0.1:25", false, Some(Refusal::NeverDeliver(never[0]))),
            ("127.0.0.1:25", true, None),
            ("192.0.2.10:26", false, None),
        ];
        for (target, routed, expected) in rows {
            assert_eq!(
                refusal(addr(target), &own, &never, routed, local),
                expected,
                "{target} routed={routed}"
            );
        }
    }

    #[test]
    fn loopback_is_local_and_a_documentation_address_is_not() {
        assert!(is_local_address(IpAddr::from([127, 0, 0, 1])));
        assert!(!is_local_address(IpAddr::from([192, 0, 2, 123])));
    }
}

"""The vocabulary of world.py: zones, records, hosts and policies. Pure data, no I/O.

The generator (gen.py) turns these into zone files, certificates and configs; the services
(services.py) read the resulting run/world.json. Nothing here opens a socket.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

LOOPBACK = ipaddress.ip_network("127.0.0.0/8")

# TLS setups a receiver or HTTPS host can have; see pki.py for what each certificate is.
TLS_SETUPS = ("none", "valid", "expired", "wrong-host", "self-signed", "dane-ta")

# Highest TLS version a receiver may speak (None: whatever Python's ssl offers, TLS 1.3 here).
MAX_TLS_VERSIONS = (None, "TLSv1.2")

# Ways an MTA-STS policy host can break RFC 8461 section 3.3 on purpose.
STS_VARIANTS = ("ok", "redirect", "content-type", "oversized", "malformed", "refused", "expired-cert")


def fqdn(name: str) -> str:
    """Absolute, lowercase form of a DNS name ("a.test" -> "a.test.")."""
    name = name.strip().lower()
    return name if name.endswith(".") else name + "."


def check_loopback(addr: str, what: str) -> str:
    ip = ipaddress.ip_address(addr)
    if ip not in LOOPBACK:
        raise ValueError(f"{what}: {addr} is not in 127.0.0.0/8; the lab never leaves loopback")
    return addr


@dataclass(frozen=True)
class Zone:
    """A DNS zone served by nsd. `signing` is "signed", "unsigned" (no DS in the parent: insecure)
    or "signed" with `bogus` RRsets whose RRSIG is corrupted after signing.

    A zone with `states` changes while the lab runs: it is generated (and signed) once per state
    ("default" plus each named one), and `tests/lab/switch ZONE STATE` serves another state.
    `ttl` keeps such answers short-lived in resolver caches."""

    name: str
    signing: str = "signed"
    bogus: tuple[tuple[str, str], ...] = ()  # (owner name, type) pairs with broken signatures
    states: tuple[str, ...] = ()
    ttl: int = 300


@dataclass(frozen=True)
class Record:
    """`state`: the record exists only in that state of its zone ("default" or a named one);
    None: in every state."""

    name: str
    rtype: str
    value: str | Tlsa
    state: str | None = None


@dataclass(frozen=True)
class Tlsa:
    """A TLSA record computed at `up` time from a generated certificate.

    `of` names a host (its leaf certificate), "dane-ta-ca" (the private DANE-TA CA) or
    "unrelated" (a key nobody serves: a guaranteed mismatch)."""

    usage: int
    selector: int
    mtype: int
    of: str


@dataclass(frozen=True)
class Receiver:
    """An SMTP receiver on port 25. `names` are the DNS names that get an A record and appear in
    its certificate; the first one is its identity. `rcpt_reply` scripts a fixed RCPT reply;
    `greylist` answers 4xx to the first RCPT of each recipient and 250 on retry; `max_tls`
    caps the TLS version it negotiates ("TLSv1.2")."""

    names: tuple[str, ...]
    ip: str
    tls: str = "valid"
    requiretls: bool = False
    greylist: bool = False
    rcpt_reply: str | None = None
    listen: bool = True
    in_dns: bool = True
    max_tls: str | None = None


@dataclass(frozen=True)
class Stripper:
    """A man in the middle on port 25 at `ip` that forwards to `backend` (a Receiver name) and
    removes STARTTLS from the EHLO reply and from the client's commands."""

    name: str
    ip: str
    backend: str


@dataclass(frozen=True)
class StsPolicy:
    """An MTA-STS policy domain: the `_mta-sts` TXT record, the `mta-sts.<domain>` HTTPS host at
    `ip` on port 443, and the policy it serves (or the way it misbehaves)."""

    domain: str
    ip: str
    mode: str
    mx: tuple[str, ...]
    max_age: int = 86400
    policy_id: str = "20260101T000000"
    variant: str = "ok"
    # (state, mode, policy id): in that state of the zone holding `_mta-sts.<domain>`, the TXT
    # record carries the other id and the host serves a policy in the other mode.
    states: tuple[tuple[str, str, str], ...] = ()


@dataclass(frozen=True)
class HttpsCollector:
    """An HTTPS endpoint on port 443 keeping every POST (TLSRPT `https:` reports)."""

    name: str
    ip: str
    path: str = "/tlsrpt"


@dataclass
class World:
    authoritative: str
    resolver: str
    nonvalidating: str
    zones: list[Zone]
    records: list[Record] = field(default_factory=list)
    receivers: list[Receiver] = field(default_factory=list)
    strippers: list[Stripper] = field(default_factory=list)
    sts: list[StsPolicy] = field(default_factory=list)
    collectors: list[HttpsCollector] = field(default_factory=list)

    def check(self) -> None:
        """Refuse anything that could send traffic outside loopback, and obvious mistakes."""
        check_loopback(self.authoritative, "authoritative server")
        check_loopback(self.resolver, "resolver")
        check_loopback(self.nonvalidating, "non-validating resolver")
        seen: dict[str, str] = {}
        for what, ip in self.addresses():
            check_loopback(ip, what)
            if ip in seen:
                raise ValueError(f"{what}: address {ip} already used by {seen[ip]}")
            seen[ip] = what
        for r in self.receivers:
            if r.tls not in TLS_SETUPS:
                raise ValueError(f"receiver {r.names[0]}: unknown tls setup {r.tls!r}")
            if r.max_tls not in MAX_TLS_VERSIONS:
                raise ValueError(f"receiver {r.names[0]}: unknown max_tls {r.max_tls!r}")
        for p in self.sts:
            if p.variant not in STS_VARIANTS:
                raise ValueError(f"mta-sts {p.domain}: unknown variant {p.variant!r}")
        names = {fqdn(n) for r in self.receivers for n in r.names}
        for s in self.strippers:
            if fqdn(s.backend) not in names:
                raise ValueError(f"stripper {s.name}: backend {s.backend} is not a receiver")

    def addresses(self) -> list[tuple[str, str]]:
        out = [("authoritative", self.authoritative), ("resolver", self.resolver), ("non-validating resolver", self.nonvalidating)]
        out += [(f"receiver {r.names[0]}", r.ip) for r in self.receivers]
        out += [(f"stripper {s.name}", s.ip) for s in self.strippers]
        out += [(f"mta-sts.{p.domain}", p.ip) for p in self.sts]
        out += [(f"collector {c.name}", c.ip) for c in self.collectors]
        return out

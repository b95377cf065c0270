"""The lab's world in one place: zones, hosts, certificates, DANE, MTA-STS and TLSRPT records.

A new scenario is a few lines here: a Receiver (or StsPolicy, Stripper), its records, and a
check in lablib/selftest.py if the lab itself should guarantee a property. The generator
(lablib/gen.py) computes everything derived (A records, TLSA hashes, DS records, signatures).
Every address must be in 127.0.0.0/8; `up` refuses anything else.
"""

from lablib.model import HttpsCollector, Receiver, Record, Stripper, StsPolicy, Tlsa, World, Zone

AUTHORITATIVE = "127.77.0.2"  # nsd, every zone, port 53
RESOLVER = "127.77.0.3"  # unbound, validating with the lab root as trust anchor, port 53
# unbound without validation: passes signatures (broken ones too) through, for strictmx's
# in-process validation mode, which must find the bogus zone bogus by itself.
NONVALIDATING = "127.77.0.4"

ZONES = [
    Zone("."),  # the lab's private root: its DNSKEYs are the trust anchor
    Zone("test."),  # signed TLD: most domains live here as plain names (secure answers)
    Zone("insecure.test.", signing="unsigned"),  # delegated without DS: answers without AD
    Zone("bogus.test.", bogus=(("_25._tcp.mx.bogus.test.", "TLSA"),)),  # DS present, TLSA RRSIG broken
    # A second signed zone with its own keys (DS in test.): a hosting provider's MX hosts, which
    # signed names in test. point to by CNAME (RFC 4035 section 5: each link validates in its zone).
    Zone("hosting.test."),
    # Destinations whose DNS changes during a test: `tests/lab/switch changing.test weakened`
    # serves the other state (pre-signed), and the short TTL keeps caches from hiding it.
    Zone("changing.test.", states=("weakened",), ttl=2),
]

RECEIVERS = [
    # Relay core: two MX of equal preference plus a backup.
    Receiver(("mx1.multi.test",), "127.77.1.1"),
    Receiver(("mx2.multi.test",), "127.77.1.2"),
    Receiver(("backup.multi.test",), "127.77.1.3"),
    # No MX, only an A record: the implicit MX (RFC 5321 section 5.1).
    Receiver(("implicit.test",), "127.77.1.4"),
    # Scripted receivers.
    Receiver(("mx.greylist.test",), "127.77.1.5", greylist=True),
    Receiver(("mx.reject.test",), "127.77.1.6", rcpt_reply="550 5.1.1 no such user here"),
    Receiver(("mx.plain.test",), "127.77.1.7", tls="none"),
    Receiver(("mx.refused.test",), "127.77.1.8", listen=False),
    # Certificates that must not verify.
    Receiver(("mx.selfsigned.test",), "127.77.1.9", tls="self-signed"),
    Receiver(("mx.expired.test",), "127.77.1.10", tls="expired"),
    Receiver(("mx.wronghost.test",), "127.77.1.11", tls="wrong-host"),
    # MTA-STS.
    Receiver(("mx.sts-enforce.test",), "127.77.1.20"),
    Receiver(("mx.sts-testing.test",), "127.77.1.21", tls="expired"),
    Receiver(("mx.sts-none.test",), "127.77.1.22", tls="self-signed"),
    Receiver(("mx1.sts-wildcard.test",), "127.77.1.23"),
    Receiver(("deep.mx.sts-wildcard.test",), "127.77.1.24"),
    Receiver(("mx.sts-enforce-badcert.test",), "127.77.1.25", tls="wrong-host"),
    Receiver(("mx.sts-mxmismatch.test",), "127.77.1.26"),
    # One receiver behind every broken policy host (its certificate names all of them).
    Receiver(
        (
            "mx.sts-broken.test",
            "mx.sts-redirect.test",
            "mx.sts-content-type.test",
            "mx.sts-oversized.test",
            "mx.sts-malformed.test",
            "mx.sts-refused.test",
            "mx.sts-expired-cert.test",
        ),
        "127.77.1.27",
    ),
    # DANE.
    Receiver(("mx.dane-ok.test",), "127.77.1.30"),
    Receiver(("mx.dane-mismatch.test",), "127.77.1.31"),
    Receiver(("mx.dane-ta.test",), "127.77.1.32", tls="dane-ta"),
    Receiver(("mx.bogus.test",), "127.77.1.33"),
    Receiver(("mx.insecure.test",), "127.77.1.34"),
    Receiver(("mx.requiretls.test",), "127.77.1.35", requiretls=True),
    # CNAME'd MX hosts (RFC 7672 section 2.2.2): the MX names are CNAMEs in test. to these.
    Receiver(("mx.hosting.test",), "127.77.1.36"),
    Receiver(("mismatch.hosting.test",), "127.77.1.37"),
    Receiver(("orig.hosting.test",), "127.77.1.38"),
    Receiver(("mx.cname-target.insecure.test",), "127.77.1.39"),
    # Only unusable TLSA records (RFC 7672 section 2.2): TLS mandatory, not authenticated.
    Receiver(("mx.dane-unusable.test",), "127.77.1.42", tls="self-signed"),
    # A receiver that speaks TLS 1.2 at most, for min_tls_version floors.
    Receiver(("mx.tls12.test",), "127.77.1.44", max_tls="TLSv1.2"),
    # Backends of the STARTTLS strippers: not in DNS, certificates name the stripper's host.
    Receiver(("backend.dane-stripped.test", "mx.dane-stripped.test"), "127.77.1.40", in_dns=False),
    Receiver(("backend.sts-stripped.test", "mx.sts-stripped.test"), "127.77.1.41", in_dns=False),
    Receiver(("backend.dane-unusable-stripped.test", "mx.dane-unusable-stripped.test"), "127.77.1.43", in_dns=False),
    # A destination that weakens between two deliveries (zone changing.test.).
    Receiver(("mx.sts-drop.changing.test",), "127.77.1.60"),
    # TLSRPT mailto: collector.
    Receiver(("mx.tlsrpt.test",), "127.77.1.50"),
]

STRIPPERS = [
    Stripper("mx.dane-stripped.test", "127.77.4.1", backend="backend.dane-stripped.test"),
    Stripper("mx.sts-stripped.test", "127.77.4.2", backend="backend.sts-stripped.test"),
    Stripper("mx.dane-unusable-stripped.test", "127.77.4.3", backend="backend.dane-unusable-stripped.test"),
]

STS = [
    StsPolicy("sts-enforce.test", "127.77.2.1", "enforce", ("mx.sts-enforce.test",)),
    StsPolicy("sts-testing.test", "127.77.2.2", "testing", ("mx.sts-testing.test",)),
    StsPolicy("sts-none.test", "127.77.2.3", "none", ("mx.sts-none.test",)),
    # "*.sts-wildcard.test" matches mx1.sts-wildcard.test only, never deep.mx.sts-wildcard.test
    # (RFC 8461 section 4.1: the wildcard covers exactly one label).
    StsPolicy("sts-wildcard.test", "127.77.2.4", "enforce", ("*.sts-wildcard.test",)),
    StsPolicy("sts-enforce-badcert.test", "127.77.2.5", "enforce", ("mx.sts-enforce-badcert.test",)),
    StsPolicy("sts-mxmismatch.test", "127.77.2.6", "enforce", ("mx.elsewhere.test",)),
    StsPolicy("sts-stripped.test", "127.77.2.7", "enforce", ("mx.sts-stripped.test",)),
    StsPolicy("sts-redirect.test", "127.77.2.10", "enforce", ("mx.sts-redirect.test",), variant="redirect"),
    StsPolicy("sts-content-type.test", "127.77.2.11", "enforce", ("mx.sts-content-type.test",), variant="content-type"),
    StsPolicy("sts-oversized.test", "127.77.2.12", "enforce", ("mx.sts-oversized.test",), variant="oversized"),
    StsPolicy("sts-malformed.test", "127.77.2.13", "enforce", ("mx.sts-malformed.test",), variant="malformed"),
    StsPolicy("sts-refused.test", "127.77.2.14", "enforce", ("mx.sts-refused.test",), variant="refused"),
    StsPolicy("sts-expired-cert.test", "127.77.2.15", "enforce", ("mx.sts-expired-cert.test",), variant="expired-cert"),
    # enforce by default; weakened: a new policy id whose policy says mode none (RFC 8461
    # section 8.3, or an attacker who controls the domain's DNS and policy host).
    StsPolicy(
        "sts-drop.changing.test",
        "127.77.2.20",
        "enforce",
        ("mx.sts-drop.changing.test",),
        states=(("weakened", "none", "20261201T000000"),),
    ),
]

COLLECTORS = [HttpsCollector("reports.tlsrpt.test", "127.77.3.1", path="/tlsrpt")]

MAILTO_RUA = "v=TLSRPTv1; rua=mailto:tlsrpt@tlsrpt.test"
HTTPS_RUA = "v=TLSRPTv1; rua=https://reports.tlsrpt.test/tlsrpt"
BOTH_RUA = "v=TLSRPTv1; rua=mailto:tlsrpt@tlsrpt.test,https://reports.tlsrpt.test/tlsrpt"


def mx(domain: str, *hosts: tuple[int, str]) -> list[Record]:
    return [Record(domain, "MX", f"{pref} {host}.") for pref, host in hosts]


def tlsa(host: str, usage: int, selector: int, mtype: int, of: str | None = None) -> Record:
    return Record(f"_25._tcp.{host}", "TLSA", Tlsa(usage, selector, mtype, of or host))


def unusable_tlsa(host: str, key_of: str) -> list[Record]:
    """A TLSA RRset at `host` in which no record is usable for SMTP (RFC 7672 section 3.1,
    RFC 6698 section 2.1, RFC 7671 section 5), several of them carrying the real key's digest."""
    owner = f"_25._tcp.{host}"
    return [
        tlsa(host, 1, 1, 1, of=key_of),  # PKIX-EE: not for SMTP (RFC 7672 section 3.1.3)
        tlsa(host, 4, 1, 1, of=key_of),  # unassigned usage
        Record(owner, "TLSA", "3 2 1 " + "5a" * 32),  # unassigned selector
        Record(owner, "TLSA", "3 1 7 " + "5b" * 32),  # unassigned matching type
        Record(owner, "TLSA", "3 1 1 " + "5c" * 16),  # SHA2-256 data 16 bytes long
        Record(owner, "TLSA", "3 1 2 " + "5d" * 32),  # SHA2-512 data 32 bytes long
        Record(owner, "TYPE52", r"\# 3 030100"),  # Full(0) without data, in generic syntax
    ]


RECORDS = [
    *mx("multi.test", (10, "mx1.multi.test"), (10, "mx2.multi.test"), (20, "backup.multi.test")),
    Record("nullmx.test", "MX", "0 ."),  # RFC 7505 null MX
    Record("nullmx.test", "A", "127.77.1.99"),  # must be ignored: the null MX wins
    # implicit.test has only its A record (from its Receiver); nxdomain.test does not exist.
    *mx("greylist.test", (10, "mx.greylist.test")),
    *mx("reject.test", (10, "mx.reject.test")),
    *mx("plain.test", (10, "mx.plain.test")),
    *mx("refused.test", (10, "mx.refused.test")),
    *mx("selfsigned.test", (10, "mx.selfsigned.test")),
    *mx("expired.test", (10, "mx.expired.test")),
    *mx("wronghost.test", (10, "mx.wronghost.test")),
    # MTA-STS domains (the _mta-sts TXT and mta-sts A records come from STS).
    *mx("sts-enforce.test", (10, "mx.sts-enforce.test")),
    *mx("sts-testing.test", (10, "mx.sts-testing.test")),
    *mx("sts-none.test", (10, "mx.sts-none.test")),
    *mx("sts-wildcard.test", (10, "mx1.sts-wildcard.test"), (20, "deep.mx.sts-wildcard.test")),
    *mx("sts-enforce-badcert.test", (10, "mx.sts-enforce-badcert.test")),
    *mx("sts-mxmismatch.test", (10, "mx.sts-mxmismatch.test")),
    *mx("sts-stripped.test", (10, "mx.sts-stripped.test")),
    *[
        r
        for d in ("redirect", "content-type", "oversized", "malformed", "refused", "expired-cert")
        for r in mx(f"sts-{d}.test", (10, f"mx.sts-{d}.test"))
    ],
    # DANE (RFC 7672): signed MX and TLSA, except where said.
    *mx("dane-ok.test", (10, "mx.dane-ok.test")),
    tlsa("mx.dane-ok.test", 3, 1, 1),
    *mx("dane-mismatch.test", (10, "mx.dane-mismatch.test")),
    tlsa("mx.dane-mismatch.test", 3, 1, 1, of="unrelated"),
    *mx("dane-ta.test", (10, "mx.dane-ta.test")),
    tlsa("mx.dane-ta.test", 2, 1, 1, of="dane-ta-ca"),
    *mx("bogus.test", (10, "mx.bogus.test")),
    tlsa("mx.bogus.test", 3, 1, 1),  # its RRSIG is corrupted: SERVFAIL from the resolver
    *mx("insecure.test", (10, "mx.insecure.test")),
    tlsa("mx.insecure.test", 3, 1, 1),  # matches, but unsigned: must not be used for DANE
    *mx("dane-stripped.test", (10, "mx.dane-stripped.test")),
    tlsa("mx.dane-stripped.test", 3, 1, 1, of="backend.dane-stripped.test"),
    # CNAME'd MX hosts (RFC 7672 section 2.2.2), every MX RRset signed in test.:
    # secure chain into hosting.test., TLSA at the target (matching / not matching);
    *mx("dane-cname.test", (10, "mx.dane-cname.test")),
    Record("mx.dane-cname.test", "CNAME", "mx.hosting.test."),
    tlsa("mx.hosting.test", 3, 1, 1),
    *mx("dane-cname-mismatch.test", (10, "mx.dane-cname-mismatch.test")),
    Record("mx.dane-cname-mismatch.test", "CNAME", "mismatch.hosting.test."),
    tlsa("mismatch.hosting.test", 3, 1, 1, of="unrelated"),
    # secure chain, no TLSA at the target: the original name's TLSA applies;
    *mx("dane-cname-orig.test", (10, "mx.dane-cname-orig.test")),
    Record("mx.dane-cname-orig.test", "CNAME", "orig.hosting.test."),
    tlsa("mx.dane-cname-orig.test", 3, 1, 1, of="orig.hosting.test"),
    # a signed CNAME into the unsigned insecure.test.: only the original name's TLSA may apply.
    *mx("dane-cname-insecure.test", (10, "mx.dane-cname-insecure.test")),
    Record("mx.dane-cname-insecure.test", "CNAME", "mx.cname-target.insecure.test."),
    tlsa("mx.dane-cname-insecure.test", 3, 1, 1, of="mx.cname-target.insecure.test"),
    # Only unusable TLSA records (RFC 7672 section 2.2): directly, and behind a STARTTLS stripper.
    *mx("dane-unusable.test", (10, "mx.dane-unusable.test")),
    *unusable_tlsa("mx.dane-unusable.test", "mx.dane-unusable.test"),
    *mx("dane-unusable-stripped.test", (10, "mx.dane-unusable-stripped.test")),
    *unusable_tlsa("mx.dane-unusable-stripped.test", "backend.dane-unusable-stripped.test"),
    # TLS version floors: a receiver that stops at TLS 1.2.
    *mx("tls12.test", (10, "mx.tls12.test")),
    # REQUIRETLS (RFC 8689): signed MX, DANE-verified, advertises REQUIRETLS after STARTTLS.
    *mx("requiretls.test", (10, "mx.requiretls.test")),
    tlsa("mx.requiretls.test", 3, 1, 1),
    # Weakening between deliveries: by default MTA-STS enforce and a verified MX host; when
    # weakened, MTA-STS mode none and an MX host whose certificate is self-signed.
    Record("sts-drop.changing.test", "MX", "10 mx.sts-drop.changing.test.", state="default"),
    Record("sts-drop.changing.test", "MX", "10 mx.selfsigned.test.", state="weakened"),
    # TLSRPT (RFC 8460): the collectors and the domains that ask for reports.
    *mx("tlsrpt.test", (10, "mx.tlsrpt.test")),
    Record("_smtp._tls.sts-enforce.test", "TXT", MAILTO_RUA),
    Record("_smtp._tls.sts-testing.test", "TXT", BOTH_RUA),
    Record("_smtp._tls.sts-enforce-badcert.test", "TXT", MAILTO_RUA),
    Record("_smtp._tls.dane-ok.test", "TXT", HTTPS_RUA),
    Record("_smtp._tls.dane-mismatch.test", "TXT", HTTPS_RUA),
]

WORLD = World(
    authoritative=AUTHORITATIVE,
    resolver=RESOLVER,
    nonvalidating=NONVALIDATING,
    zones=ZONES,
    records=RECORDS,
    receivers=RECEIVERS,
    strippers=STRIPPERS,
    sts=STS,
    collectors=COLLECTORS,
)

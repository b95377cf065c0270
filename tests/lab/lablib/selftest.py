"""Checks the lab itself: DNSSEC outcomes, certificate properties, receivers' scripts, the
STARTTLS stripper, MTA-STS policy hosts and TLSRPT collectors. One line per check, then
"N passed, N failed"; exit status 1 on any failure. Testing strictmx is left to the Rust tests.
Usage: python3 -m lablib.selftest RUN_DIR
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import ssl
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
from cryptography import x509
from cryptography.hazmat.primitives import serialization

TIMEOUT = 5


class Check:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def __call__(self, name: str, fn) -> None:
        try:
            result = fn()
            ok, detail = (result, "") if isinstance(result, bool) else result
        except Exception as e:  # a self-test reports every failure and goes on
            ok, detail = False, f"{type(e).__name__}: {e}"
        if ok:
            self.passed += 1
            print(f"ok   {name}")
        else:
            self.failed += 1
            print(f"FAIL {name}{': ' + detail if detail else ''}")


# ---- DNS ----------------------------------------------------------------------------------------


def ask(server: str, name: str, rtype: str, recurse: bool = True) -> dns.message.Message:
    q = dns.message.make_query(name, rtype, want_dnssec=True)
    if not recurse:
        q.flags &= ~dns.flags.RD
    return dns.query.udp(q, server, port=53, timeout=TIMEOUT)


def answer_texts(m: dns.message.Message, rtype: str) -> list[str]:
    t = dns.rdatatype.from_text(rtype)
    return [rd.to_text() for rrset in m.answer if rrset.rdtype == t for rd in rrset]


def secure(resolver: str, name: str, rtype: str):
    m = ask(resolver, name, rtype)
    ad = bool(m.flags & dns.flags.AD)
    texts = answer_texts(m, rtype)
    return ad and dns.rcode.to_text(m.rcode()) == "NOERROR" and bool(texts), f"rcode {dns.rcode.to_text(m.rcode())}, ad={ad}, {texts}"


# ---- TLS and SMTP ---------------------------------------------------------------------------------


def tls_context(cafile: str | None) -> ssl.SSLContext:
    if cafile is None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.load_verify_locations(cafile)
    return ctx


class Smtp:
    """A minimal SMTP client, enough to look at what a lab receiver offers."""

    def __init__(self, ip: str, port: int = 25):
        self.sock = socket.create_connection((ip, port), timeout=TIMEOUT)
        self.file = self.sock.makefile("rb")
        self.greeting = self.read()

    def read(self) -> tuple[int, list[str]]:
        lines = []
        while True:
            line = self.file.readline().decode().rstrip("\r\n")
            if not line:
                raise ConnectionError("connection closed")
            lines.append(line[4:])
            if line[3:4] != "-":
                return int(line[:3]), lines

    def cmd(self, text: str) -> tuple[int, list[str]]:
        self.sock.sendall(text.encode() + b"\r\n")
        return self.read()

    def ehlo(self) -> list[str]:
        code, lines = self.cmd("EHLO selftest.lab")
        assert code == 250, f"EHLO answered {code}"
        return [l.upper() for l in lines[1:]]

    def starttls(self, ctx: ssl.SSLContext, name: str) -> ssl.SSLSocket:
        code, lines = self.cmd("STARTTLS")
        if code != 220:
            raise ConnectionError(f"STARTTLS answered {code} {lines}")
        self.sock = ctx.wrap_socket(self.sock, server_hostname=name)
        self.file = self.sock.makefile("rb")
        return self.sock

    def close(self) -> None:
        try:
            self.cmd("QUIT")
        except OSError:
            pass
        self.sock.close()


def starttls_verify(ip: str, name: str, cafile: str | None) -> tuple[bool, str]:
    """(verified, detail): STARTTLS and verify against `cafile` for host `name`."""
    s = Smtp(ip)
    try:
        s.ehlo()
        tls = s.starttls(tls_context(cafile), name)
        return True, tls.version() or ""
    except ssl.SSLCertVerificationError as e:
        return False, e.verify_message
    finally:
        s.sock.close()


def served_leaf(ip: str, name: str) -> x509.Certificate:
    s = Smtp(ip)
    try:
        s.ehlo()
        tls = s.starttls(tls_context(None), name)
        return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
    finally:
        s.sock.close()


def spki_sha256(cert: x509.Certificate) -> str:
    der = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def refused(ip: str, port: int) -> tuple[bool, str]:
    try:
        socket.create_connection((ip, port), timeout=TIMEOUT).close()
        return False, "connection was accepted"
    except ConnectionRefusedError:
        return True, ""


def https(ip: str, host: str, path: str, cafile: str | None, method: str = "GET", body: bytes = b"", ctype: str = "") -> tuple[int, dict, bytes]:
    raw = socket.create_connection((ip, 443), timeout=TIMEOUT)
    with tls_context(cafile).wrap_socket(raw, server_hostname=host) as s:
        head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {len(body)}\r\n"
        if ctype:
            head += f"Content-Type: {ctype}\r\n"
        s.sendall(head.encode() + b"\r\n" + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
    return int(lines[0].split()[1]), headers, payload


def raw_tlsa(server: str, name: str) -> tuple[bool, list[tuple[int, int, int, int]]]:
    """(AD, [(usage, selector, matching type, data length)]) of a TLSA answer, read from the
    wire: dnspython (like BIND's dig) refuses a digest of the wrong length, which the lab serves
    on purpose."""
    q = dns.message.make_query(name, "TLSA", want_dnssec=True)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(TIMEOUT)
        s.sendto(q.to_wire(), (server, 53))
        wire = s.recv(65535)

    def skip_name(i: int) -> int:
        while wire[i]:
            if wire[i] & 0xC0 == 0xC0:
                return i + 2
            i += wire[i] + 1
        return i + 1

    flags, qdcount, ancount = int.from_bytes(wire[2:4], "big"), int.from_bytes(wire[4:6], "big"), int.from_bytes(wire[6:8], "big")
    i = 12
    for _ in range(qdcount):
        i = skip_name(i) + 4
    found = []
    for _ in range(ancount):
        i = skip_name(i)
        rtype, rdlength = int.from_bytes(wire[i : i + 2], "big"), int.from_bytes(wire[i + 8 : i + 10], "big")
        rdata = wire[i + 10 : i + 10 + rdlength]
        if rtype == 52:
            found.append((rdata[0], rdata[1], rdata[2], len(rdata) - 3))
        i += 10 + rdlength
    return bool(flags & dns.flags.AD), sorted(found)


def records(path: str) -> list[dict]:
    return [json.loads(l) for l in Path(path).read_text().splitlines() if l.strip()]


# ---- the checks ----------------------------------------------------------------------------------


def main(run_dir: Path) -> int:
    lab = json.loads((run_dir / "lab.json").read_text())
    hosts = lab["hosts"]
    resolver = lab["resolver"].split(":")[0]
    auth = lab["authoritative"].split(":")[0]
    ca = lab["ca_bundle"]
    check = Check()

    def ip(name: str) -> str:
        return hosts[name]["ip"]

    # DNS: the chain of trust and its three outcomes (RFC 4035 section 4.3).
    check("authoritative nsd answers for test. with AA", lambda: bool(ask(auth, "test.", "SOA", recurse=False).flags & dns.flags.AA))
    for name, rtype in [("test.", "SOA"), ("multi.test.", "MX"), ("mx.dane-ok.test.", "A"), ("_25._tcp.mx.dane-ok.test.", "TLSA"), ("bogus.test.", "MX"), ("_mta-sts.sts-enforce.test.", "TXT")]:
        check(f"signed answer {name} {rtype} carries AD", lambda n=name, t=rtype: secure(resolver, n, t))

    def bogus():
        m = ask(resolver, "_25._tcp.mx.bogus.test.", "TLSA")
        return m.rcode() == dns.rcode.SERVFAIL, dns.rcode.to_text(m.rcode())

    check("bogus zone TLSA gives SERVFAIL", bogus)

    def passthrough():
        m = ask(lab["nonvalidating_resolver"].split(":")[0], "_25._tcp.mx.bogus.test.", "TLSA")
        sigs = [rr for rr in m.answer if rr.rdtype == dns.rdatatype.RRSIG]
        return m.rcode() == dns.rcode.NOERROR and bool(sigs) and not (m.flags & dns.flags.AD), f"{dns.rcode.to_text(m.rcode())}, {len(sigs)} RRSIG sets"

    check("non-validating resolver passes the bogus TLSA and its broken RRSIG through", passthrough)

    def insecure():
        m = ask(resolver, "_25._tcp.mx.insecure.test.", "TLSA")
        texts = answer_texts(m, "TLSA")
        return bool(texts) and not (m.flags & dns.flags.AD), f"ad={bool(m.flags & dns.flags.AD)} {texts}"

    check("insecure zone TLSA answers without AD", insecure)

    def nxdomain():
        m = ask(resolver, "nxdomain.test.", "MX")
        return m.rcode() == dns.rcode.NXDOMAIN and bool(m.flags & dns.flags.AD), f"{dns.rcode.to_text(m.rcode())} ad={bool(m.flags & dns.flags.AD)}"

    check("nxdomain.test is an authenticated NXDOMAIN", nxdomain)

    # CNAME'd MX hosts (RFC 7672 section 2.2.2): links signed in two zones, or ending unsigned.
    def cname_chain(name: str, target: str, ad: bool):
        m = ask(resolver, name, "A")
        cname = answer_texts(m, "CNAME")
        got_ad = bool(m.flags & dns.flags.AD)
        return cname == [target] and bool(answer_texts(m, "A")) and got_ad == ad, f"cname={cname} ad={got_ad}"

    check("mx.dane-cname.test is a secure CNAME into hosting.test", lambda: cname_chain("mx.dane-cname.test.", "mx.hosting.test.", True))
    check("mx.dane-cname-orig.test is a secure CNAME into hosting.test", lambda: cname_chain("mx.dane-cname-orig.test.", "orig.hosting.test.", True))
    check("mx.dane-cname-insecure.test leads into insecure.test (no AD)", lambda: cname_chain("mx.dane-cname-insecure.test.", "mx.cname-target.insecure.test.", False))
    check("the CNAME at mx.dane-cname-insecure.test itself carries AD", lambda: secure(resolver, "mx.dane-cname-insecure.test.", "CNAME"))

    def two_signers():
        m = ask(lab["nonvalidating_resolver"].split(":")[0], "mx.dane-cname.test.", "A")
        signers = sorted({rd.signer.to_text() for rrset in m.answer if rrset.rdtype == dns.rdatatype.RRSIG for rd in rrset})
        return signers == ["hosting.test.", "test."], f"signers {signers}"

    check("non-validating resolver passes the chain with RRSIGs of test. and hosting.test.", two_signers)
    check("hosting.test. is delegated with DS", lambda: secure(resolver, "hosting.test.", "DS"))
    check("nullmx.test publishes a null MX (RFC 7505)", lambda: (answer_texts(ask(resolver, "nullmx.test.", "MX"), "MX") == ["0 ."], ""))

    def multi():
        mx = sorted(answer_texts(ask(resolver, "multi.test.", "MX"), "MX"))
        return mx == ["10 mx1.multi.test.", "10 mx2.multi.test.", "20 backup.multi.test."], str(mx)

    check("multi.test has two MX of preference 10 and a backup", multi)

    def implicit():
        m = ask(resolver, "implicit.test.", "MX")
        a = answer_texts(ask(resolver, "implicit.test.", "A"), "A")
        return not answer_texts(m, "MX") and m.rcode() == dns.rcode.NOERROR and a == [ip("implicit.test")], f"a={a}"

    check("implicit.test has an A record and no MX", implicit)

    def anchor():
        served = {"".join(rd.to_text().split()) for rd in answer_texts_raw(ask(resolver, ".", "DNSKEY"))}
        lines = Path(lab["trust_anchor"]).read_text().splitlines()
        mine = {"".join(l.split()[4:]) for l in lines if l.strip()}
        return bool(mine) and mine <= served, f"{len(mine)} anchored, {len(served)} served"

    check("trust anchor file holds the root DNSKEYs served", anchor)

    # Certificates: each has the property it claims.
    for name in ["mx1.multi.test", "mx.sts-enforce.test", "mx.dane-ok.test", "mx.tlsrpt.test"]:
        check(f"{name} certificate verifies with the lab CA (intermediate served)", lambda n=name: starttls_verify(ip(n), n, ca))
    for name, reason in [("mx.expired.test", "expired"), ("mx.wronghost.test", "mismatch"), ("mx.selfsigned.test", "self-signed"), ("mx.dane-ta.test", "self-signed certificate in certificate chain")]:

        def bad(n=name, why=reason):
            ok, detail = starttls_verify(ip(n), n, ca)
            return not ok and why in detail, detail

        check(f"{name} certificate fails verification ({reason})", bad)
    check("mx.dane-ta.test certificate verifies with the private DANE-TA CA", lambda: starttls_verify(ip("mx.dane-ta.test"), "mx.dane-ta.test", lab["dane_ta_ca"]))

    def tlsa(name: str) -> str:
        texts = answer_texts(ask(resolver, f"_25._tcp.{name}.", "TLSA"), "TLSA")
        assert len(texts) == 1, f"TLSA answer {texts}"
        return texts[0].split(None, 3)[3].replace(" ", "").lower()

    check("DANE 3 1 1 of mx.dane-ok.test matches the served key", lambda: tlsa("mx.dane-ok.test") == spki_sha256(served_leaf(ip("mx.dane-ok.test"), "mx.dane-ok.test")))
    check("DANE 3 1 1 of mx.dane-mismatch.test does not match", lambda: tlsa("mx.dane-mismatch.test") != spki_sha256(served_leaf(ip("mx.dane-mismatch.test"), "mx.dane-mismatch.test")))
    check("DANE 2 1 1 of mx.dane-ta.test matches the private CA", lambda: tlsa("mx.dane-ta.test") == spki_sha256(x509.load_pem_x509_certificate(Path(lab["dane_ta_ca"]).read_bytes())))
    check("DANE 3 1 1 of mx.hosting.test (a CNAME target) matches the served key", lambda: tlsa("mx.hosting.test") == spki_sha256(served_leaf(ip("mx.hosting.test"), "mx.hosting.test")))
    check("DANE 3 1 1 of mismatch.hosting.test does not match", lambda: tlsa("mismatch.hosting.test") != spki_sha256(served_leaf(ip("mismatch.hosting.test"), "mismatch.hosting.test")))
    check("DANE 3 1 1 at the alias mx.dane-cname-orig.test matches its target's key", lambda: tlsa("mx.dane-cname-orig.test") == spki_sha256(served_leaf(ip("orig.hosting.test"), "orig.hosting.test")))
    check("DANE 3 1 1 at the alias mx.dane-cname-insecure.test matches its target's key", lambda: tlsa("mx.dane-cname-insecure.test") == spki_sha256(served_leaf(ip("mx.cname-target.insecure.test"), "mx.cname-target.insecure.test")))

    def unusable(name: str):
        ad, rrs = raw_tlsa(resolver, f"_25._tcp.{name}.")
        # RFC 7672 section 3.1, RFC 6698 section 2.1, RFC 7671 section 5.
        usable = [r for r in rrs if r[0] in (2, 3) and r[1] in (0, 1) and ((r[2], r[3]) in ((1, 32), (2, 64)) or (r[2] == 0 and r[3] > 0))]
        empty = [r for r in rrs if r[3] == 0]
        return ad and len(rrs) == 7 and not usable and len(empty) == 1, f"ad={ad} records {rrs}, usable {usable}"

    check("mx.dane-unusable.test has a secure TLSA RRset of 7 unusable records", lambda: unusable("mx.dane-unusable.test"))
    check("mx.dane-unusable-stripped.test has a secure TLSA RRset of 7 unusable records", lambda: unusable("mx.dane-unusable-stripped.test"))
    check("DANE 3 1 1 behind the stripper matches its backend", lambda: tlsa("mx.dane-stripped.test") == spki_sha256(served_leaf(ip("backend.dane-stripped.test"), "mx.dane-stripped.test")))

    # Receivers.
    def plain():
        s = Smtp(ip("mx.plain.test"))
        try:
            return "STARTTLS" not in s.ehlo(), ""
        finally:
            s.close()

    check("mx.plain.test offers no STARTTLS", plain)
    check("mx.refused.test refuses connections", lambda: refused(ip("mx.refused.test"), 25))
    tag = f"selftest-{int(time.time() * 1000)}"

    def scripted(name: str, expect: list[int]):
        got = []
        for _ in expect:
            s = Smtp(ip(name))
            try:
                s.ehlo()
                s.cmd("MAIL FROM:<selftest@lab.test>")
                got.append(s.cmd(f"RCPT TO:<{tag}@{name.split('.', 1)[1]}>")[0])
            finally:
                s.close()
        return got == expect, f"replies {got}"

    check("mx.greylist.test answers 451 to a first RCPT and 250 on retry", lambda: scripted("mx.greylist.test", [451, 250]))
    check("mx.reject.test answers 550 to every RCPT", lambda: scripted("mx.reject.test", [550, 550]))

    def requiretls():
        s = Smtp(ip("mx.requiretls.test"))
        try:
            before = s.ehlo()
            s.starttls(tls_context(ca), "mx.requiretls.test")
            after = s.ehlo()
            return "REQUIRETLS" not in before and "REQUIRETLS" in after, f"before={before} after={after}"
        finally:
            s.close()

    check("mx.requiretls.test advertises REQUIRETLS after STARTTLS only", requiretls)

    def tls12_only():
        ok, version = starttls_verify(ip("mx.tls12.test"), "mx.tls12.test", ca)
        ctx = tls_context(ca)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        s = Smtp(ip("mx.tls12.test"))
        try:
            s.ehlo()
            s.starttls(ctx, "mx.tls12.test")
            refused13 = False
        except ssl.SSLError:
            refused13 = True
        finally:
            s.sock.close()
        return ok and version == "TLSv1.2" and refused13, f"verified={ok} version={version} refuses TLS 1.3 only={refused13}"

    check("mx.tls12.test speaks TLS 1.2 and refuses a TLS 1.3-only client", tls12_only)

    def delivery():
        name, rcpt = "mx1.multi.test", f"{tag}@multi.test"
        s = Smtp(ip(name))
        try:
            s.ehlo()
            s.starttls(tls_context(ca), name)
            s.ehlo()
            codes = [s.cmd("MAIL FROM:<selftest@lab.test> BODY=8BITMIME")[0], s.cmd(f"RCPT TO:<{rcpt}> NOTIFY=FAILURE")[0], s.cmd("DATA")[0]]
            s.sock.sendall(b"Subject: selftest\r\n\r\n..leading dot\r\n.\r\n")
            codes.append(s.read()[0])
        finally:
            s.close()
        recs = [r for r in records(hosts[name]["records"]) if any(x["address"] == rcpt for x in r["rcpts"])]
        ok = codes == [250, 250, 354, 250] and len(recs) == 1
        r = recs[0] if recs else {}
        ok = ok and r["tls"] and r["tls_version"] == "TLSv1.3" and r["sni"] == name and r["cipher"] and r["mail_params"] == {"BODY": "8BITMIME"}
        ok = ok and r["rcpts"][0]["params"] == {"NOTIFY": "FAILURE"} and r["data"].endswith(".leading dot\r\n")
        return bool(ok), f"codes {codes}, record {r}"

    check("a message to mx1.multi.test is recorded with TLS version, cipher and SNI", delivery)

    # The STARTTLS stripper.
    def stripper(name: str, backend: str):
        direct = Smtp(ip(backend))
        try:
            offered = "STARTTLS" in direct.ehlo()
        finally:
            direct.close()
        s = Smtp(ip(name))
        try:
            stripped = "STARTTLS" not in s.ehlo()
            code = s.cmd("STARTTLS")[0]
        finally:
            s.close()
        return offered and stripped and code >= 500, f"backend offers={offered}, stripped={stripped}, STARTTLS answered {code}"

    check("stripper in front of mx.dane-stripped.test removes STARTTLS", lambda: stripper("mx.dane-stripped.test", "backend.dane-stripped.test"))
    check("stripper in front of mx.dane-unusable-stripped.test removes STARTTLS", lambda: stripper("mx.dane-unusable-stripped.test", "backend.dane-unusable-stripped.test"))
    check("stripper in front of mx.sts-stripped.test removes STARTTLS", lambda: stripper("mx.sts-stripped.test", "backend.sts-stripped.test"))

    # MTA-STS policy hosts (RFC 8461 section 3).
    for domain, p in lab["sts"].items():
        host, pip = p["host"], p["ip"]
        variant = p["variant"]

        def sts(domain=domain, p=p, host=host, pip=pip, variant=variant):
            txt = answer_texts(ask(resolver, f"_mta-sts.{domain}.", "TXT"), "TXT")
            if not (txt and txt[0].strip('"').startswith("v=STSv1;")):
                return False, f"TXT {txt}"
            if variant == "refused":
                return refused(pip, 443)
            if variant == "expired-cert":
                try:
                    https(pip, host, "/.well-known/mta-sts.txt", ca)
                    return False, "verified"
                except ssl.SSLCertVerificationError as e:
                    return "expired" in e.verify_message, e.verify_message
            status, headers, body = https(pip, host, "/.well-known/mta-sts.txt", ca)
            ctype = headers.get("content-type", "")
            if variant == "redirect":
                return 300 <= status < 400 and "location" in headers, f"status {status}"
            if variant == "content-type":
                return status == 200 and not ctype.startswith("text/plain"), ctype
            if variant == "oversized":
                return status == 200 and len(body) > 64 * 1024, f"{len(body)} bytes"
            if variant == "malformed":
                return status == 200 and b"version: STSv1" not in body, body[:40].decode()
            fields = dict(l.split(": ", 1) for l in body.decode().splitlines() if ": " in l)
            return status == 200 and ctype.startswith("text/plain") and fields.get("version") == "STSv1" and fields.get("mode") == p["mode"], f"{status} {ctype} {fields}"

        check(f"mta-sts policy host for {domain} ({p['mode']}, {variant})", sts)

    # A zone that changes while the lab runs (tests/lab/switch): both states are served, signed.
    def switching():
        switch = str(Path(__file__).resolve().parent.parent / "switch")
        seen = []
        try:
            for state, mx, mode in [("weakened", "10 mx.selfsigned.test.", "none"), ("default", "10 mx.sts-drop.changing.test.", "enforce")]:
                subprocess.run([switch, "changing.test", state], check=True, capture_output=True, timeout=30)
                # Past the zone's TTL, so the validating resolver asks nsd again.
                time.sleep(3)
                got = answer_texts(ask(resolver, "sts-drop.changing.test.", "MX"), "MX")
                ok, _ = secure(resolver, "sts-drop.changing.test.", "MX")
                _, _, body = https(ip("mta-sts.sts-drop.changing.test"), "mta-sts.sts-drop.changing.test", "/.well-known/mta-sts.txt", ca)
                seen.append((state, got == [mx] and ok and f"mode: {mode}" in body.decode(), got, ok))
        except (subprocess.SubprocessError, OSError) as e:
            return False, str(e)
        return all(s[1] for s in seen), f"{seen}"

    check("changing.test switches to its weakened state and back, signed, with its policy", switching)

    # TLSRPT (RFC 8460 section 3).
    for domain, scheme in [("sts-enforce.test", "mailto:"), ("dane-ok.test", "https:"), ("sts-testing.test", "https:")]:
        check(f"_smtp._tls.{domain} names a {scheme} collector", lambda d=domain, s=scheme: secure(resolver, f"_smtp._tls.{d}.", "TXT") if s in " ".join(answer_texts(ask(resolver, f"_smtp._tls.{d}.", "TXT"), "TXT")) else (False, "no rua"))

    def https_collector():
        t = lab["tlsrpt"]
        url = urllib.parse.urlparse(t["https_url"])
        body = json.dumps({"organization-name": "selftest", "report-id": tag}).encode()
        status, _, _ = https(hosts[url.hostname]["ip"], url.hostname, url.path, ca, "POST", body, "application/tlsrpt+json")
        got = [r for r in records(t["https_records"]) if tag.encode() in base64.b64decode(r["body"])]
        return status == 200 and len(got) == 1, f"status {status}, {len(got)} kept"

    check("TLSRPT https collector keeps a POSTed report", https_collector)
    check("TLSRPT mailto collector mx.tlsrpt.test verifies with the lab CA", lambda: starttls_verify(ip("mx.tlsrpt.test"), "mx.tlsrpt.test", ca))

    print(f"{check.passed} passed, {check.failed} failed")
    return 1 if check.failed else 0


def answer_texts_raw(m: dns.message.Message) -> list:
    return [rd for rrset in m.answer if rrset.rdtype == dns.rdatatype.DNSKEY for rd in rrset]


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]).resolve()))

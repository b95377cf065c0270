"""The lab's certificate authority and every certificate the lab serves, made with `cryptography`.

Makes a root CA (the only one in the CA bundle), an intermediate that signs the per-host leaves,
and a private CA used only for DANE-TA (TLSA usage 2). Leaves are made once and kept under
run/pki/ so TLSA hashes stay stable across `up`; deciding what verifies is left to the clients.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DAY = dt.timedelta(days=1)
WRONG_NAME = "not-this-host.wrong.test"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "strictmx lab"), x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def spki_sha256(cert_or_key) -> str:
    """TLSA selector 1 (SubjectPublicKeyInfo), matching type 1 (SHA-256), RFC 6698 section 2.1."""
    public = cert_or_key.public_key()
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


@dataclass
class Issued:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


def _build(
    subject: str,
    issuer: Issued | None,
    *,
    ca: bool,
    sans: tuple[str, ...] = (),
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    issuer_name = issuer.cert.subject if issuer else _name(subject)
    signing_key = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - DAY)
        .not_valid_after(not_after or now + 825 * DAY)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False
        )
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None if issuer is None else 0), critical=True)
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    else:
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        builder = builder.add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
        )
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in sans]), critical=False)
    return Issued(key, builder.sign(signing_key, hashes.SHA256()))


class Pki:
    """Files under `root` (run/pki): ca.pem, and per identity <name>/{chain.pem,key.pem}."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.ca = self._authority("root-ca", "strictmx lab root CA", None)
        self.intermediate = self._authority("intermediate-ca", "strictmx lab intermediate CA", self.ca)
        self.dane_ta = self._authority("dane-ta-ca", "strictmx lab DANE-TA private CA", None)
        self.unrelated = self._authority("unrelated", "strictmx lab key that nobody serves", None)
        (root / "ca.pem").write_bytes(_pem_cert(self.ca.cert))

    def _load(self, d: Path) -> Issued | None:
        if not (d / "key.pem").exists() or not (d / "cert.pem").exists():
            return None
        key = serialization.load_pem_private_key((d / "key.pem").read_bytes(), None)
        cert = x509.load_pem_x509_certificate((d / "cert.pem").read_bytes())
        return Issued(key, cert)

    def _store(self, d: Path, issued: Issued, chain: list[x509.Certificate]) -> None:
        d.mkdir(parents=True, exist_ok=True)
        (d / "key.pem").write_bytes(_pem_key(issued.key))
        (d / "cert.pem").write_bytes(_pem_cert(issued.cert))
        (d / "chain.pem").write_bytes(b"".join(_pem_cert(c) for c in [issued.cert, *chain]))

    def _authority(self, slug: str, cn: str, issuer: Issued | None) -> Issued:
        d = self.root / slug
        found = self._load(d)
        if found:
            return found
        issued = _build(cn, issuer, ca=True)
        self._store(d, issued, [])
        return issued

    def identity(self, name: str, setup: str, sans: tuple[str, ...]) -> Path | None:
        """Directory holding chain.pem and key.pem for `name` with TLS setup `setup`, made if
        missing. Returns None for setup "none"."""
        if setup == "none":
            return None
        d = self.root / f"{name}.{setup}"
        if self._load(d):
            return d
        now = _now()
        if setup == "valid":
            issued, chain = _build(name, self.intermediate, ca=False, sans=sans), [self.intermediate.cert]
        elif setup == "expired":
            issued = _build(name, self.intermediate, ca=False, sans=sans, not_before=now - 90 * DAY, not_after=now - 30 * DAY)
            chain = [self.intermediate.cert]
        elif setup == "wrong-host":
            issued, chain = _build(WRONG_NAME, self.intermediate, ca=False, sans=(WRONG_NAME,)), [self.intermediate.cert]
        elif setup == "self-signed":
            issued, chain = _build(name, None, ca=False, sans=sans), []
        elif setup == "dane-ta":
            issued, chain = _build(name, self.dane_ta, ca=False, sans=sans), [self.dane_ta.cert]
        else:
            raise ValueError(f"{name}: unknown tls setup {setup!r}")
        self._store(d, issued, chain)
        return d

    def leaf(self, d: Path) -> x509.Certificate:
        return x509.load_pem_x509_certificate((d / "cert.pem").read_bytes())

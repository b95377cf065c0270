"""Turns world.py into files under run/: keys, signed zones, nsd and unbound configs, the trust
anchor, certificates, world.json for the lab's services and lab.json for the Rust tests.

Starting and stopping processes is left to `up` and `down`; serving is left to services.py.
Usage: python3 -m lablib.gen RUN_DIR
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from lablib.model import Record, Tlsa, World, Zone, fqdn
from lablib.pki import Pki, spki_sha256

NS_NAME = "ns1.test."
TTL = 300


def zone_of(name: str, zones: list[Zone]) -> Zone:
    """The most specific zone containing `name`."""
    name = fqdn(name)
    best = None
    for z in zones:
        zn = fqdn(z.name)
        if zn == "." or name == zn or name.endswith("." + zn):
            if best is None or len(zn) > len(fqdn(best.name)):
                best = z
    if best is None:
        raise ValueError(f"{name}: no zone contains it")
    return best


def parent_of(zone: Zone, zones: list[Zone]) -> Zone:
    parent_name = fqdn(zone.name).split(".", 1)[1] or "."
    return zone_of(parent_name, zones)


def slug(zone_name: str) -> str:
    return "root" if fqdn(zone_name) == "." else fqdn(zone_name).rstrip(".")


def run(cmd: list[str], cwd: Path | None = None) -> str:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


class Generator:
    def __init__(self, world: World, run_dir: Path):
        self.world = world
        self.run_dir = run_dir.resolve()
        self.pki = Pki(self.run_dir / "pki")
        self.records_dir = self.run_dir / "records"
        self.identities: dict[str, Path | None] = {}

    # ---- certificates -------------------------------------------------------------------

    def make_identities(self) -> None:
        for r in self.world.receivers:
            d = self.pki.identity(r.names[0], r.tls, tuple(r.names))
            for n in r.names:
                self.identities[fqdn(n)] = d
        for p in self.world.sts:
            host = f"mta-sts.{p.domain}"
            setup = "expired" if p.variant == "expired-cert" else "valid"
            self.identities[fqdn(host)] = self.pki.identity(host, setup, (host,))
        for c in self.world.collectors:
            self.identities[fqdn(c.name)] = self.pki.identity(c.name, "valid", (c.name,))

    def tlsa_value(self, t: Tlsa) -> str:
        if (t.selector, t.mtype) != (1, 1):
            raise ValueError("the lab computes TLSA selector 1, matching type 1 only")
        if t.of == "dane-ta-ca":
            digest = spki_sha256(self.pki.dane_ta.cert)
        elif t.of == "unrelated":
            digest = spki_sha256(self.pki.unrelated.cert)
        else:
            d = self.identities.get(fqdn(t.of))
            if d is None:
                raise ValueError(f"TLSA of {t.of}: no certificate for that host")
            digest = spki_sha256(self.pki.leaf(d))
        return f"{t.usage} {t.selector} {t.mtype} {digest}"

    # ---- DNS ----------------------------------------------------------------------------

    def all_records(self) -> list[Record]:
        w = self.world
        out = [Record(NS_NAME, "A", w.authoritative)]
        for r in w.receivers:
            if r.in_dns:
                out += [Record(n, "A", r.ip) for n in r.names]
        out += [Record(s.name, "A", s.ip) for s in w.strippers]
        for p in w.sts:
            out.append(Record(f"mta-sts.{p.domain}", "A", p.ip))
            first = "default" if p.states else None
            out.append(Record(f"_mta-sts.{p.domain}", "TXT", f"v=STSv1; id={p.policy_id}", state=first))
            for state, _, policy_id in p.states:
                out.append(Record(f"_mta-sts.{p.domain}", "TXT", f"v=STSv1; id={policy_id}", state=state))
        out += [Record(c.name, "A", c.ip) for c in w.collectors]
        return out + list(w.records)

    def keys(self, zone: Zone) -> tuple[str, str]:
        """(KSK, ZSK) base names in run/dns/keys/<zone>/, made if missing."""
        d = self.run_dir / "dns" / "keys" / slug(zone.name)
        d.mkdir(parents=True, exist_ok=True)
        found = {}
        for key in sorted(d.glob("K*.key")):
            flags = key.read_text().split("DNSKEY")[1].split()[0]
            found["ksk" if flags == "257" else "zsk"] = str(key.with_suffix(""))
        for role in ("ksk", "zsk"):
            if role not in found:
                args = ["ldns-keygen", "-a", "ECDSAP256SHA256"] + (["-k"] if role == "ksk" else []) + [fqdn(zone.name)]
                found[role] = str(d / run(args, cwd=d).strip())
        return found["ksk"], found["zsk"]

    @staticmethod
    def dnskey_lines(base: str) -> str:
        text = Path(base + ".key").read_text().split(";")[0].split()
        owner, rest = text[0], text[text.index("DNSKEY") + 1 :]
        return f"{owner} {TTL} IN DNSKEY {' '.join(rest)}"

    @staticmethod
    def ds_line(base: str) -> str:
        text = Path(base + ".ds").read_text().split(";")[0].split()
        owner, rest = text[0], text[text.index("DS") + 1 :]
        return f"{owner} {TTL} IN DS {' '.join(rest)}"

    def zone_text(self, zone: Zone, records: list[Record], serial: int) -> str:
        zn = fqdn(zone.name)
        ttl = zone.ttl
        lines = [
            f"$ORIGIN {zn}",
            f"{zn} {ttl} IN SOA {NS_NAME} hostmaster.{'' if zn == '.' else zn} {serial} 3600 600 86400 {min(60, ttl)}",
            f"{zn} {ttl} IN NS {NS_NAME}",
        ]
        for child in self.world.zones:
            if fqdn(child.name) == zn or fqdn(child.name) == "." or parent_of(child, self.world.zones) != zone:
                continue
            cn = fqdn(child.name)
            lines.append(f"{cn} {TTL} IN NS {NS_NAME}")
            if NS_NAME == cn or NS_NAME.endswith("." + cn):
                lines.append(f"{NS_NAME} {TTL} IN A {self.world.authoritative}")
            if child.signing == "signed":
                ksk, _ = self.keys(child)
                lines.append(self.ds_line(ksk))
        for r in records:
            value = self.tlsa_value(r.value) if isinstance(r.value, Tlsa) else r.value
            if r.rtype == "TXT":
                value = '"' + value.replace('"', '\\"') + '"'
            lines.append(f"{fqdn(r.name)} {ttl} IN {r.rtype} {value}")
        return "\n".join(lines) + "\n"

    def write_zones(self) -> list[tuple[str, str]]:
        """Writes every zone (signed where asked); returns (zone name, zone file) pairs for nsd.
        A zone with states gets one file per state, and nsd serves a copy of the default one
        (`tests/lab/switch` copies another over it)."""
        zones = self.world.zones
        by_zone: dict[str, list[Record]] = {fqdn(z.name): [] for z in zones}
        for r in self.all_records():
            z = zone_of(r.name, zones)
            # A name at a child apex belongs to the child, except the parent's own delegation data.
            by_zone[fqdn(z.name)].append(r)
        served = []
        serial = int(time.time())
        for z in zones:
            records = by_zone[fqdn(z.name)]
            unknown = {r.state for r in records if r.state not in (None, "default", *z.states)}
            if unknown:
                raise ValueError(f"zone {z.name}: records in unknown state(s) {sorted(unknown)}")
            if not z.states:
                served.append((fqdn(z.name), str(self.write_zone(z, records, slug(z.name), serial))))
                continue
            states_dir = self.run_dir / "states"
            states_dir.mkdir(exist_ok=True)
            for n, state in enumerate(("default", *z.states)):
                mine = [r for r in records if r.state in (None, state)]
                path = self.write_zone(z, mine, f"{slug(z.name)}.{state}", serial + n)
                (self.run_dir / "dns" / f"{slug(z.name)}.{state}.serial").write_text(f"{serial + n}\n")
                if state == "default":
                    current = self.run_dir / "dns" / f"{slug(z.name)}.current.zone"
                    shutil.copyfile(path, current)
                    (states_dir / slug(z.name)).write_text("default\n")
                    served.append((fqdn(z.name), str(current)))
        return served

    def write_zone(self, z: Zone, records: list[Record], name: str, serial: int) -> Path:
        """Writes (and signs, corrupts, checks) one zone file; returns the file nsd can serve."""
        path = self.run_dir / "dns" / f"{name}.zone"
        path.write_text(self.zone_text(z, records, serial))
        if z.signing == "signed":
            ksk, zsk = self.keys(z)
            inception = str(int(time.time()) - 3600)
            signed = path.with_suffix(".zone.signed")
            run(["ldns-signzone", "-i", inception, "-o", fqdn(z.name), "-f", str(signed), str(path), ksk, zsk])
            self.empty_tlsa_as_generic(signed)
            if z.bogus:
                self.corrupt(signed, z.bogus)
            path = signed
        elif z.signing != "unsigned":
            raise ValueError(f"zone {z.name}: signing must be signed or unsigned")
        run(["nsd-checkzone", fqdn(z.name), str(path)])
        return path

    @staticmethod
    def empty_tlsa_as_generic(signed: Path) -> None:
        """ldns-signzone prints a TLSA record without association data as `TLSA 3 1 0`, which nsd
        cannot parse; writes such records in RFC 3597 generic syntax (same wire form, so the
        signature still holds)."""
        out = []
        for line in signed.read_text().splitlines():
            f = line.split()
            if len(f) == 7 and f[3] == "TLSA":
                head = "".join(f"{int(v):02x}" for v in f[4:7])
                line = "\t".join([*f[:3], "TYPE52", f"\\# 3 {head}"])
            out.append(line)
        signed.write_text("\n".join(out) + "\n")

    @staticmethod
    def corrupt(signed: Path, rrsets: tuple[tuple[str, str], ...]) -> None:
        """Breaks the RRSIG over each listed RRset by changing one character of its signature
        (still valid base64), so a validator must call the answer bogus (RFC 4035 section 5.3)."""
        wanted = {(fqdn(n), t.upper()) for n, t in rrsets}
        hit = set()
        out = []
        for line in signed.read_text().splitlines():
            f = line.split()
            if len(f) > 5 and f[3] == "RRSIG" and (f[0].lower(), f[4].upper()) in wanted:
                sig = f[-1]
                i = len(sig) // 2
                f[-1] = sig[:i] + ("A" if sig[i] != "A" else "B") + sig[i + 1 :]
                line = "\t".join(f)
                hit.add((f[0].lower(), f[4].upper()))
            out.append(line)
        missing = wanted - hit
        if missing:
            raise ValueError(f"{signed}: no RRSIG found to corrupt for {sorted(missing)}")
        signed.write_text("\n".join(out) + "\n")

    def write_dns_configs(self, served: list[tuple[str, str]]) -> None:
        w, r = self.world, self.run_dir
        nsd_dir, ub_dir = r / "nsd", r / "unbound"
        nsd_dir.mkdir(exist_ok=True)
        ub_dir.mkdir(exist_ok=True)
        zones = "".join(f'zone:\n  name: "{n}"\n  zonefile: "{f}"\n' for n, f in served)
        (nsd_dir / "nsd.conf").write_text(
            f"""server:
  ip-address: {w.authoritative}
  port: 53
  do-ip4: yes
  do-ip6: no
  username: ""
  chroot: ""
  zonesdir: "{nsd_dir}"
  database: ""
  pidfile: "{nsd_dir}/nsd.pid"
  xfrdfile: "{nsd_dir}/xfrd.state"
  xfrdir: "{nsd_dir}"
  zonelistfile: "{nsd_dir}/zone.list"
  logfile: "{r}/logs/nsd.log"
  server-count: 1
  hide-version: yes
  verbosity: 1
remote-control:
  control-enable: no
{zones}"""
        )
        (ub_dir / "root.hints").write_text(f". 3600000 NS {NS_NAME}\n{NS_NAME} 3600000 A {w.authoritative}\n")
        (ub_dir / "unbound.conf").write_text(self.unbound_conf(w.resolver, "validator iterator", "validating"))
        (ub_dir / "nonvalidating.conf").write_text(self.unbound_conf(w.nonvalidating, "iterator", "nonvalidating"))
        ksk, zsk = self.keys(next(z for z in self.world.zones if fqdn(z.name) == "."))
        (r / "trust-anchor.key").write_text(self.dnskey_lines(ksk) + "\n" + self.dnskey_lines(zsk) + "\n")
        (r / "trust-anchor.ds").write_text(self.ds_line(ksk) + "\n")

    def unbound_conf(self, address: str, modules: str, slug: str) -> str:
        r, ub_dir = self.run_dir, self.run_dir / "unbound"
        validation = (
            f"""  trust-anchor-file: "{r}/trust-anchor.key"
  trust-anchor-signaling: no
  root-key-sentinel: no
  harden-dnssec-stripped: yes
  val-log-level: 2
  val-bogus-ttl: 5
"""
            if "validator" in modules
            else ""
        )
        return f"""server:
  interface: {address}
  port: 53
  outgoing-interface: {address}
  do-ip4: yes
  do-ip6: no
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "{ub_dir}"
  pidfile: "{ub_dir}/{slug}.pid"
  use-syslog: no
  logfile: ""
  verbosity: 1
  num-threads: 1
  so-reuseport: no
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  root-hints: "{ub_dir}/root.hints"
  module-config: "{modules}"
{validation}  aggressive-nsec: no
  prefetch: no
  cache-max-ttl: 30
  cache-max-negative-ttl: 5
  local-zone: "test." nodefault
remote-control:
  control-enable: no
"""

    # ---- services and tests ---------------------------------------------------------------

    def records_file(self, name: str) -> str:
        return str(self.records_dir / f"{fqdn(name).rstrip('.')}.jsonl")

    def ident(self, name: str) -> dict | None:
        d = self.identities.get(fqdn(name))
        return None if d is None else {"chain": str(d / "chain.pem"), "key": str(d / "key.pem")}

    def write_json(self) -> None:
        w, r = self.world, self.run_dir
        self.records_dir.mkdir(exist_ok=True)
        receivers = [
            {
                "name": rc.names[0],
                "names": list(rc.names),
                "ip": rc.ip,
                "port": 25,
                "tls": rc.tls,
                "identity": self.ident(rc.names[0]),
                "requiretls": rc.requiretls,
                "greylist": rc.greylist,
                "rcpt_reply": rc.rcpt_reply,
                "listen": rc.listen,
                "max_tls": rc.max_tls,
                "records": self.records_file(rc.names[0]),
            }
            for rc in w.receivers
        ]
        by_name = {fqdn(n): rc for rc in receivers for n in rc["names"]}
        strippers = [
            {"name": s.name, "ip": s.ip, "port": 25, "backend": by_name[fqdn(s.backend)]["ip"], "backend_name": s.backend}
            for s in w.strippers
        ]
        sts = [
            {
                "domain": p.domain,
                "host": f"mta-sts.{p.domain}",
                "ip": p.ip,
                "port": 443,
                "variant": p.variant,
                "mode": p.mode,
                "policy": policy_text(p.mode, p.mx, p.max_age),
                "identity": self.ident(f"mta-sts.{p.domain}"),
                # The policy served in each state of the zone holding its TXT record, and the
                # file saying which state is served now.
                "states": {state: policy_text(mode, p.mx, p.max_age) for state, mode, _ in p.states},
                "state_file": str(self.run_dir / "states" / slug(zone_of(f"_mta-sts.{p.domain}", w.zones).name)),
            }
            for p in w.sts
        ]
        collectors = [
            {"name": c.name, "ip": c.ip, "port": 443, "path": c.path, "identity": self.ident(c.name), "records": self.records_file(c.name)}
            for c in w.collectors
        ]
        services = {
            "receivers": receivers,
            "strippers": strippers,
            "sts": sts,
            "collectors": collectors,
            "sts_requests": str(self.records_dir / "mta-sts-requests.jsonl"),
        }
        (r / "world.json").write_text(json.dumps(services, indent=2))

        hosts = {}
        for rc in receivers:
            for n in rc["names"]:
                hosts[n] = {
                    "ip": rc["ip"],
                    "port": 25,
                    "kind": "receiver",
                    "tls": rc["tls"],
                    "listening": rc["listen"],
                    "records": rc["records"],
                    "chain": rc["identity"]["chain"] if rc["identity"] else None,
                    "max_tls": rc["max_tls"],
                }
        for s in strippers:
            backend = by_name[fqdn(s["backend_name"])]
            hosts[s["name"]] = {"ip": s["ip"], "port": 25, "kind": "stripper", "tls": "none", "listening": True, "records": backend["records"], "chain": None, "max_tls": None}
        for p in sts:
            tls = "expired" if p["variant"] == "expired-cert" else "valid"
            hosts[p["host"]] = {"ip": p["ip"], "port": 443, "kind": "mta-sts", "tls": tls, "listening": p["variant"] != "refused", "records": services["sts_requests"]}
        for c in collectors:
            hosts[c["name"]] = {"ip": c["ip"], "port": 443, "kind": "collector", "tls": "valid", "listening": True, "records": c["records"]}
        mailto = next(rc for rc in receivers if "mx.tlsrpt.test" in rc["names"])
        lab = {
            "version": 1,
            "run_dir": str(r),
            "authoritative": f"{w.authoritative}:53",
            "resolver": f"{w.resolver}:53",
            "nonvalidating_resolver": f"{w.nonvalidating}:53",
            "ca_bundle": str(r / "pki" / "ca.pem"),
            "trust_anchor": str(r / "trust-anchor.key"),
            "trust_anchor_ds": str(r / "trust-anchor.ds"),
            "dane_ta_ca": str(r / "pki" / "dane-ta-ca" / "cert.pem"),
            "intermediate_ca": str(r / "pki" / "intermediate-ca" / "cert.pem"),
            "hosts": hosts,
            "sts": {p["domain"]: {"host": p["host"], "ip": p["ip"], "variant": p["variant"], "mode": p["mode"], "policy": p["policy"]} for p in sts},
            "tlsrpt": {
                "mailto": "tlsrpt@tlsrpt.test",
                "mailto_records": mailto["records"],
                "https_url": f"https://{collectors[0]['name']}{collectors[0]['path']}" if collectors else None,
                "https_records": collectors[0]["records"] if collectors else None,
            },
        }
        (r / "lab.json").write_text(json.dumps(lab, indent=2))


def policy_text(mode: str, mx: tuple[str, ...], max_age: int) -> str:
    """An MTA-STS policy body, RFC 8461 section 3.2 (CRLF line ends)."""
    lines = ["version: STSv1", f"mode: {mode}", *[f"mx: {m}" for m in mx], f"max_age: {max_age}"]
    return "\r\n".join(lines) + "\r\n"


def main() -> int:
    run_dir = Path(sys.argv[1])
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from world import WORLD

    WORLD.check()
    (run_dir / "dns").mkdir(parents=True, exist_ok=True)
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    g = Generator(WORLD, run_dir)
    g.make_identities()
    served = g.write_zones()
    g.write_dns_configs(served)
    g.write_json()
    print(f"lab: generated {len(served)} zones, {len(WORLD.receivers)} receivers, {len(WORLD.sts)} policy hosts")
    return 0


if __name__ == "__main__":
    sys.exit(main())

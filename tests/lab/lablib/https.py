"""The lab's HTTPS hosts: MTA-STS policy hosts (RFC 8461 section 3.3, and ways to break it) and
the TLSRPT `https:` collector (RFC 8460 section 3), over asyncio + ssl with minimal HTTP/1.1.

Every request is appended as a JSON line to a records file; judging the client is left to tests.
"""

from __future__ import annotations

import asyncio
import base64
import time

from lablib.smtp import append_record, server_context

WELL_KNOWN = "/.well-known/mta-sts.txt"
OVERSIZED = 100 * 1024  # RFC 8461 section 3.3 lets clients stop at 64 KiB
MAX_BODY = 10 * 1024 * 1024
TIMEOUT = 30


async def read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], bytes]:
    request_line = (await asyncio.wait_for(reader.readline(), TIMEOUT)).decode("latin-1").strip()
    method, path, _ = (request_line.split(" ", 2) + ["", ""])[:3]
    headers: dict[str, str] = {}
    while True:
        line = (await asyncio.wait_for(reader.readline(), TIMEOUT)).decode("latin-1").strip()
        if not line:
            break
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or 0)
    if length > MAX_BODY:
        raise ValueError("request body too large")
    body = await asyncio.wait_for(reader.readexactly(length), TIMEOUT) if length else b""
    return method, path, headers, body


def response(status: str, body: bytes, content_type: str = "text/plain", extra: str = "") -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n{extra}\r\n"
    return head.encode() + body


class HttpsHost:
    def __init__(self, spec: dict, records: str):
        self.spec = spec
        self.records = records
        self.sni_seen: dict[int, str] = {}
        self.ctx = server_context(spec["identity"], self.sni_seen)

    async def serve(self) -> asyncio.AbstractServer:
        return await asyncio.start_server(self.session, self.spec["ip"], self.spec["port"], ssl=self.ctx, ssl_handshake_timeout=TIMEOUT)

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            method, path, headers, body = await read_request(reader)
            sslobj = writer.get_extra_info("ssl_object")
            sni = self.sni_seen.pop(id(sslobj), None) if sslobj else None
            append_record(
                self.records,
                {
                    "host": self.name(),
                    "method": method,
                    "path": path,
                    "headers": headers,
                    "sni": sni,
                    "body": base64.b64encode(body).decode(),
                    "time": time.time(),
                },
            )
            writer.write(self.answer(method, path, headers))
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError):
            pass
        finally:
            writer.close()


class StsHost(HttpsHost):
    def name(self) -> str:
        return self.spec["host"]

    def current_policy(self) -> str:
        """The policy for the state its zone is in now (`tests/lab/switch`), else the default."""
        states = self.spec.get("states") or {}
        if not states:
            return self.spec["policy"]
        try:
            with open(self.spec["state_file"]) as f:
                state = f.read().strip()
        except OSError:
            state = "default"
        return states.get(state, self.spec["policy"])

    def answer(self, method: str, path: str, headers: dict[str, str]) -> bytes:
        if method != "GET" or path != WELL_KNOWN:
            return response("404 Not Found", b"not found\n")
        policy = self.current_policy().encode()
        variant = self.spec["variant"]
        if variant == "redirect":
            # RFC 8461 section 3.3: "HTTP 3xx redirects MUST NOT be followed".
            target = f"https://{self.spec['host']}/policy-elsewhere.txt"
            return response("301 Moved Permanently", b"", extra=f"Location: {target}\r\n")
        if variant == "content-type":
            return response("200 OK", policy, content_type="text/html")
        if variant == "oversized":
            filler = b"".join(b"# padding line to exceed the size limit clients must enforce\r\n" for _ in range(OVERSIZED // 60))
            return response("200 OK", policy + filler)
        if variant == "malformed":
            return response("200 OK", b"version: STSv9\r\nmode: sometimes\r\nmx mx.example\r\nmax_age: -1\r\n")
        return response("200 OK", policy)


class Collector(HttpsHost):
    """RFC 8460 section 3: reports are POSTed as application/tlsrpt+gzip (or +json)."""

    def name(self) -> str:
        return self.spec["name"]

    def answer(self, method: str, path: str, headers: dict[str, str]) -> bytes:
        if method == "POST" and path == self.spec["path"]:
            return response("200 OK", b"report received\n")
        return response("404 Not Found", b"not found\n")

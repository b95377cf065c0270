"""The lab's SMTP receivers and the STARTTLS-stripping proxy (asyncio + ssl, stdlib only).

A receiver speaks enough ESMTP for a relay to deliver to it (RFC 5321, STARTTLS RFC 3207, DSN
RFC 3461, SIZE, 8BITMIME, SMTPUTF8, PIPELINING, optionally REQUIRETLS RFC 8689), follows its
scripted replies, and appends one JSON line per accepted message to its records file. Whether
the relay behaved correctly is left to the tests that read those records.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
import time
from pathlib import Path

MAX_LINE = 4096  # generous; RFC 5321 section 4.5.3.1.4 asks for 512 on command lines
MAX_SIZE = 50 * 1024 * 1024
IDLE_TIMEOUT = 120


def server_context(identity: dict, sni_seen: dict[int, str], max_tls: str | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if max_tls == "TLSv1.2":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(identity["chain"], identity["key"])

    def remember_sni(sslobj, server_name, _ctx):
        if server_name:
            sni_seen[id(sslobj)] = server_name
        return None

    ctx.sni_callback = remember_sni
    return ctx


def append_record(path: str, record: dict) -> None:
    """One write per line in append mode, so a reader never sees half of a record."""
    line = (json.dumps(record, sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def split_address(arg: str, keyword: str) -> tuple[str, dict[str, str | None]] | None:
    """'FROM:<a@b> SIZE=10 BODY=8BITMIME' -> ('a@b', {'SIZE': '10', 'BODY': '8BITMIME'})."""
    if not arg.upper().startswith(keyword + ":"):
        return None
    rest = arg[len(keyword) + 1 :].strip()
    if not rest.startswith("<") or ">" not in rest:
        return None
    end = rest.index(">")
    address, params = rest[1:end], {}
    for token in rest[end + 1 :].split():
        key, _, value = token.partition("=")
        params[key.upper()] = value if "=" in token else None
    return address, params


class Receiver:
    def __init__(self, spec: dict):
        self.spec = spec
        self.name = spec["name"]
        self.sni_seen: dict[int, str] = {}
        self.tls_ctx = server_context(spec["identity"], self.sni_seen, spec.get("max_tls")) if spec["identity"] else None
        self.greylisted: set[str] = set()
        self.counter = 0

    async def serve(self) -> asyncio.AbstractServer:
        Path(self.spec["records"]).touch()
        return await asyncio.start_server(self.session, self.spec["ip"], self.spec["port"], limit=MAX_LINE * 2)

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await Session(self, reader, writer).run()
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError):
            pass
        finally:
            writer.close()


class Session:
    def __init__(self, rx: Receiver, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.rx, self.reader, self.writer = rx, reader, writer
        self.peer = writer.get_extra_info("peername")
        self.tls: dict | None = None
        self.helo: str | None = None
        self.reset()

    def reset(self) -> None:
        self.mail_from: tuple[str, dict] | None = None
        self.rcpts: list[dict] = []

    async def reply(self, text: str) -> None:
        self.writer.write(text.replace("\n", "\r\n").encode() + b"\r\n")
        await self.writer.drain()

    async def readline(self) -> bytes:
        line = await asyncio.wait_for(self.reader.readline(), IDLE_TIMEOUT)
        if not line:
            raise ConnectionError("peer closed")
        return line

    async def run(self) -> None:
        await self.reply(f"220 {self.rx.name} ESMTP strictmx lab receiver")
        while True:
            raw = await self.readline()
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            verb, _, arg = line.partition(" ")
            handler = getattr(self, "cmd_" + verb.upper(), None)
            if handler is None:
                await self.reply("500 5.5.2 command not recognized")
                continue
            if await handler(arg.strip()) == "quit":
                return

    def extensions(self) -> list[str]:
        ext = ["PIPELINING", "8BITMIME", "SMTPUTF8", f"SIZE {MAX_SIZE}", "ENHANCEDSTATUSCODES", "DSN"]
        if self.rx.tls_ctx and not self.tls:
            ext.append("STARTTLS")
        # RFC 8689 section 2: REQUIRETLS is only meaningful (and offered) after STARTTLS.
        if self.rx.spec["requiretls"] and self.tls:
            ext.append("REQUIRETLS")
        return ext

    async def cmd_EHLO(self, arg: str) -> None:
        self.helo = arg
        self.reset()
        lines = [self.rx.name, *self.extensions()]
        await self.reply("\n".join(f"250{'-' if i < len(lines) - 1 else ' '}{t}" for i, t in enumerate(lines)))

    async def cmd_HELO(self, arg: str) -> None:
        self.helo = arg
        self.reset()
        await self.reply(f"250 {self.rx.name}")

    async def cmd_STARTTLS(self, arg: str) -> None:
        if not self.rx.tls_ctx or self.tls:
            await self.reply("502 5.5.1 STARTTLS not offered")
            return
        await self.reply("220 2.0.0 ready to start TLS")
        await self.writer.start_tls(self.rx.tls_ctx)
        sslobj = self.writer.get_extra_info("ssl_object")
        cipher = sslobj.cipher()
        self.tls = {"version": sslobj.version(), "cipher": cipher[0] if cipher else None, "sni": self.rx.sni_seen.pop(id(sslobj), None)}
        # RFC 3207 section 4.2: forget everything learned before TLS; the client must EHLO again.
        self.helo = None
        self.reset()

    async def cmd_MAIL(self, arg: str) -> None:
        if self.helo is None:
            await self.reply("503 5.5.1 EHLO first")
            return
        parsed = split_address(arg, "FROM")
        if parsed is None:
            await self.reply("501 5.5.4 syntax: MAIL FROM:<address>")
            return
        if "REQUIRETLS" in parsed[1] and not (self.tls and self.rx.spec["requiretls"]):
            await self.reply("555 5.7.30 REQUIRETLS not supported here")
            return
        self.reset()
        self.mail_from = parsed
        await self.reply("250 2.1.0 sender ok")

    async def cmd_RCPT(self, arg: str) -> None:
        if self.mail_from is None:
            await self.reply("503 5.5.1 MAIL first")
            return
        parsed = split_address(arg, "TO")
        if parsed is None:
            await self.reply("501 5.5.4 syntax: RCPT TO:<address>")
            return
        address = parsed[0]
        if self.rx.spec["rcpt_reply"]:
            await self.reply(self.rx.spec["rcpt_reply"])
            return
        if self.rx.spec["greylist"] and address.lower() not in self.rx.greylisted:
            self.rx.greylisted.add(address.lower())
            await self.reply("451 4.7.1 greylisted, try again later")
            return
        self.rcpts.append({"address": address, "params": parsed[1]})
        await self.reply("250 2.1.5 recipient ok")

    async def cmd_DATA(self, arg: str) -> None:
        if self.mail_from is None or not self.rcpts:
            await self.reply("554 5.5.1 no valid recipients")
            return
        await self.reply("354 end data with <CRLF>.<CRLF>")
        chunks, size, too_big = [], 0, False
        while True:
            raw = await self.readline()
            if raw in (b".\r\n", b".\n"):
                break
            if raw.startswith(b"."):
                raw = raw[1:]  # RFC 5321 section 4.5.2: undo dot-stuffing
            size += len(raw)
            if size > MAX_SIZE:
                too_big = True
            elif not too_big:
                chunks.append(raw)
        if too_big:
            await self.reply("552 5.3.4 message too big")
            self.reset()
            return
        await self.reply(f"250 2.0.0 accepted as {self.record(b''.join(chunks))}")
        self.reset()

    def record(self, data: bytes) -> str:
        self.rx.counter += 1
        msg_id = f"{self.rx.name}-{os.getpid()}-{self.rx.counter}"
        try:
            text, encoding = data.decode("utf-8"), "text"
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(data).decode(), "base64"
        append_record(
            self.rx.spec["records"],
            {
                "id": msg_id,
                "host": self.rx.name,
                "ip": self.rx.spec["ip"],
                "peer": f"{self.peer[0]}:{self.peer[1]}" if self.peer else None,
                "helo": self.helo,
                "mail_from": self.mail_from[0],
                "mail_params": self.mail_from[1],
                "rcpts": self.rcpts,
                "tls": self.tls is not None,
                "tls_version": self.tls["version"] if self.tls else None,
                "cipher": self.tls["cipher"] if self.tls else None,
                "sni": self.tls["sni"] if self.tls else None,
                "size": len(data),
                "data": text,
                "data_encoding": encoding,
                "time": time.time(),
            },
        )
        return msg_id

    async def cmd_RSET(self, arg: str) -> None:
        self.reset()
        await self.reply("250 2.0.0 reset")

    async def cmd_NOOP(self, arg: str) -> None:
        await self.reply("250 2.0.0 ok")

    async def cmd_VRFY(self, arg: str) -> None:
        await self.reply("252 2.5.0 cannot verify")

    async def cmd_QUIT(self, arg: str) -> str:
        await self.reply("221 2.0.0 bye")
        return "quit"


class Stripper:
    """A man in the middle: drops the STARTTLS line from every multi-line reply of the server
    and replaces a client's STARTTLS command by an unknown verb, which the server refuses."""

    def __init__(self, spec: dict):
        self.spec = spec

    async def serve(self) -> asyncio.AbstractServer:
        return await asyncio.start_server(self.session, self.spec["ip"], self.spec["port"], limit=MAX_LINE * 2)

    async def session(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        try:
            s_reader, s_writer = await asyncio.wait_for(asyncio.open_connection(self.spec["backend"], 25), 10)
        except (OSError, asyncio.TimeoutError):
            c_writer.close()
            return
        tasks = [asyncio.create_task(self.upstream(c_reader, s_writer)), asyncio.create_task(self.downstream(s_reader, c_writer))]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            c_writer.close()
            s_writer.close()

    @staticmethod
    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        in_data = False
        while line := await asyncio.wait_for(reader.readline(), IDLE_TIMEOUT):
            command = line.strip().upper()
            if in_data:
                in_data = line not in (b".\r\n", b".\n")
            elif command == b"DATA":
                in_data = True
            elif command == b"STARTTLS":
                line = b"XXXXXXXX\r\n"
            writer.write(line)
            await writer.drain()

    @staticmethod
    async def downstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pending: list[bytes] = []
        while line := await asyncio.wait_for(reader.readline(), IDLE_TIMEOUT):
            pending.append(line)
            if len(line) >= 4 and line[3:4] == b"-":
                continue
            kept = [l for l in pending if l[4:].strip().upper() != b"STARTTLS"]
            if kept:
                # The last kept line must end the reply ("250 " instead of "250-").
                kept[-1] = kept[-1][:3] + b" " + kept[-1][4:]
            writer.write(b"".join(kept))
            await writer.drain()
            pending = []

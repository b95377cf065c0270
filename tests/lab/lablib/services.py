"""The lab's Python services in one process: receivers, strippers, MTA-STS hosts, collectors.

Reads run/world.json (written by gen.py), binds every listener, then writes run/services.ready.
Its pid is recorded by `up`, which is also what stops it (through `down`).
Usage: python3 -m lablib.services RUN_DIR
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

from lablib.https import Collector, StsHost
from lablib.smtp import Receiver, Stripper


async def main(run_dir: Path) -> None:
    spec = json.loads((run_dir / "world.json").read_text())
    Path(spec["sts_requests"]).touch()
    servers = []
    for r in spec["receivers"]:
        if r["listen"]:
            servers.append(await Receiver(r).serve())
    for s in spec["strippers"]:
        servers.append(await Stripper(s).serve())
    for p in spec["sts"]:
        if p["variant"] != "refused":
            servers.append(await StsHost(p, spec["sts_requests"]).serve())
    for c in spec["collectors"]:
        Path(c["records"]).touch()
        servers.append(await Collector(c, c["records"]).serve())
    (run_dir / "services.ready").write_text(f"{len(servers)} listeners\n")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for s in servers:
        s.close()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]).resolve()))

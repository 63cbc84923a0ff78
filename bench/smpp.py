"""SMPP ingress throughput: MO messages per second over one bind, beside the HTTP ingress's figure
from the same run, both against one ``smsroute serve``.

The SMSC is smpp34's server mode (``tests/smsc.py``, a child process): it pushes ``--count``
deliver_sm to the engine's bind with up to ``--window`` unanswered, and times from the bind to the
last deliver_sm_resp OK. The HTTP figure is ``bench.ingress``'s wrk load (Agile Telecom form
posts) against the same engine. As in ``bench.ingress``, the engine's processing process is paused
(SIGSTOP) during both, so each figure is the ingress's own: read, log durably, answer. Afterwards
the log must hold every message the SMSC saw acknowledged, or the run fails.

Run from the repository root: ``.venv/bin/python -m bench.smpp [--count 20000] [--window 64] [--duration 10s]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.ingress import (
    LUA,
    ROOT,
    Server,
    add_load_options,
    children,
    free_port,
    measure,
    paused,
    serve_command,
    wrk,
    wrk_missing,
)
from smsroute.engines.embedded.log import SQLiteLog
from smsroute.models.raw import RawEvent


def smpp_events(path: Path) -> int:
    log = SQLiteLog(path)
    return sum(RawEvent.decode(record).provider == "smpp" for _, _, record in log.read(limit=10_000_000))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="MO messages per second over one SMPP bind, beside HTTP's.")
    parser.add_argument("--count", type=int, default=20_000, help="deliver_sm the SMSC sends (default 20000)")
    parser.add_argument("--window", type=int, default=64, help="unanswered deliver_sm, SMSC and engine (default 64)")
    parser.add_argument("--duration", default="10s", help="measured wrk run against the HTTP ingress (default 10s)")
    add_load_options(parser)
    args = parser.parse_args(argv)
    if wrk_missing():
        return 2
    with tempfile.TemporaryDirectory(prefix="smsroute-bench-") as tmp:
        workdir = Path(tmp)
        script = workdir / "agiletelecom.lua"
        script.write_text(LUA)
        smsc_port, engine_port = free_port(), free_port()
        config = workdir / "smsroute.toml"
        config.write_text(
            f'[smpp.bench]\nhost = "127.0.0.1"\nport = {smsc_port}\nsystem_id = "bench"\npassword = "bench"\n'
            f'bind = "transceiver"\nwindow = {args.window}\nreconnect_initial = 0.2\nreconnect_max = 0.5\n'
        )
        engine = Server(
            "engine",
            serve_command(engine_port, workdir / "data", config=config),
            engine_port,
            workdir,
        )
        smsc = None
        try:
            engine.wait_listening()
            with paused(children(engine.process.pid)):
                wrk(engine, script, "warmup", args.warmup, args)
                http = measure(engine, script, args)
                smsc = subprocess.Popen(
                    [
                        sys.executable,
                        str(ROOT / "tests" / "smsc.py"),
                        "--port",
                        str(smsc_port),
                        "--count",
                        str(args.count),
                        "--window",
                        str(args.window),
                    ],
                    stdout=subprocess.PIPE,
                    text=True,
                    cwd=ROOT,
                )
                assert smsc.stdout is not None
                line = smsc.stdout.readline()
                if not line:
                    raise RuntimeError(f"the SMSC ended without a result:\n{engine.stderr()[-3000:]}")
                result = json.loads(line)
        finally:
            if smsc is not None and smsc.poll() is None:
                smsc.kill()
                smsc.wait()
            engine.stop()
        logged = smpp_events(workdir / "data" / "log.db")
    durable = logged >= result["count"]
    figures = {
        "smpp_mo_per_s": round(result["per_second"]),
        "smpp_messages": result["count"],
        "smpp_seconds": round(result["seconds"], 2),
        "smpp_redelivered": result["redelivered"],
        "window": args.window,
        "http_requests_per_s": round(http.requests_per_s),
        "http_p99_ms": http.p99_ms,
        "http_connections": args.connections,
        "logged_smpp_events": logged,
        "durable": durable,
    }
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(
            f"SMPP, one bind (window {args.window}):  {figures['smpp_mo_per_s']:>7} MO msg/s "
            f"({result['count']} in {result['seconds']:.2f} s, {result['redelivered']} redelivered)"
        )
        print(
            f"HTTP ingress (wrk, {args.connections} conn): {figures['http_requests_per_s']:>7} msg/s "
            f"(p99 {http.p99_ms:.1f} ms)"
        )
        print(f"log: {logged} SMPP events for {result['count']} acknowledged: {'durable' if durable else 'LOST'}")
    return 0 if durable else 1


if __name__ == "__main__":
    sys.exit(main())

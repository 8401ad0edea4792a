"""Peers: other MLLP servers measured in the same command as the engine.

A figure for the engine alone says little (it depends on the machine, the load
generator, the day); its ratio to peers run in the same command on the same machine
does. Each peer runs as its own process on a free port, like the engine, so it gets a
core and a GIL of its own:

- `echo`: raw asyncio MLLP, no HL7 parsing; answers each frame with a fixed small ACK
  (MSH-10 copied in by a byte slice so the generator's MSA-2 check holds). The ceiling
  of this harness on this machine: the engine cannot be faster than that.
- `python-hl7`: a minimal asyncio server that decodes each message by its MSH-18,
  parses it with python-hl7 (`hl7.parse`) and answers `create_ack("AA")`. What a
  Python shop's hand-written listener costs, without storage.
- `medplum`: @medplum/hl7's `Hl7Server` on Node (bench/peers/medplum/server.js), parsing
  each message and answering its `buildAck()`. Installed by the bench with
  `npm install --prefix bench/peers/medplum` when `node` and `npm` exist.

None of the peers store anything: the engine's ACK means "committed to the journal".

Run one by hand: `python -m bench.peers echo --port 2600`. (This module shadows the
`bench/peers/` folder, which only holds the Node peer's files.)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.mllp import EB_CR, SB, FrameSplitter

try:  # python-hl7 is in the test extras; without it the python-hl7 peer is left out
    import hl7
except ImportError:  # pragma: no cover
    hl7 = None

REPO = Path(__file__).resolve().parents[1]
MEDPLUM_DIR = REPO / "bench" / "peers" / "medplum"

PEER_NAMES = ("echo", "python-hl7", "medplum")

_ECHO_HEAD = b"MSH|^~\\&|ECHO|BENCH|||20250101000000||ACK|1|P|2.5\rMSA|AA|"
_CHARSETS = {
    b"UNICODE UTF-8": "utf-8",
    b"UNICODE": "utf-8",
    b"GB 18030-2000": "gb18030",
    b"8859/1": "latin-1",
    b"ASCII": "ascii",
}


def _msh_fields(payload: bytes) -> list[bytes]:
    end = payload.find(b"\r")
    first = payload[: end if end >= 0 else len(payload)]
    return first.split(first[3:4] or b"|")


def _control_id(payload: bytes) -> bytes:
    fields = _msh_fields(payload)
    return fields[9] if len(fields) > 9 else b""


class _Answering(asyncio.Protocol):
    """Splits MLLP frames and answers each, in order, with `answer(payload)`."""

    def __init__(self) -> None:
        self.splitter = FrameSplitter()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        frames = self.splitter.feed(data)
        if frames and self.transport is not None:
            self.transport.write(b"".join(SB + self.answer(p) + EB_CR for p in frames))

    def answer(self, payload: bytes) -> bytes:
        raise NotImplementedError


class EchoServer(_Answering):
    """Answers every frame at once with a fixed ACK; parses nothing but MSH-10."""

    def answer(self, payload: bytes) -> bytes:
        return _ECHO_HEAD + _control_id(payload) + b"\r"


class Hl7Server(_Answering):
    """python-hl7: decode by MSH-18, `hl7.parse`, `create_ack`; answers in order."""

    def answer(self, payload: bytes) -> bytes:
        return answer_hl7(payload)


def answer_hl7(payload: bytes) -> bytes:
    assert hl7 is not None, "python-hl7 is not installed"
    fields = _msh_fields(payload)
    charset = _CHARSETS.get(fields[17].strip().upper(), "utf-8") if len(fields) > 17 else "utf-8"
    try:
        message = hl7.parse(payload.decode(charset))
        return str(message.create_ack("AA")).encode(charset)
    except Exception as exc:  # a real listener would answer AR; so does this one
        reason = str(exc).replace("|", " ").replace("\r", " ")[:120]
        control = _control_id(payload)
        return (
            b"MSH|^~\\&|HL7PEER|BENCH|||20250101000000||ACK|1|P|2.5\rMSA|AR|"
            + control
            + (f"|{reason}\r".encode())
        )


async def serve(kind: str, host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    factory = EchoServer if kind == "echo" else Hl7Server
    server = await loop.create_server(factory, host, port, reuse_address=True, backlog=512)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"ready {kind} {host}:{port}", flush=True)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.peers", description="run one Python peer")
    p.add_argument("kind", choices=["echo", "python-hl7"])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args(argv)
    from bench.load import run_async

    run_async(serve(args.kind, args.host, args.port))
    return 0


# --------------------------------------------------------------------------- processes


@dataclass
class PeerProcess:
    """A peer server in its own process; `start` returns once it says it listens."""

    name: str
    argv: list[str]
    port: int
    cwd: Path = REPO
    log_path: Path | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self, timeout: float = 20.0) -> None:
        log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.argv, cwd=self.cwd, stdout=subprocess.PIPE, stderr=log, env=_peer_env()
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = b""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.startswith(b"ready"):
                return
            if not line and self.proc.poll() is not None:
                break
        self.stop()
        raise RuntimeError(f"peer {self.name} did not start (last output {line!r}); see {self.log_path}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None


def _peer_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def python_peer(kind: str, port: int, log_path: Path | None) -> PeerProcess:
    return PeerProcess(
        kind, [sys.executable, "-m", "bench.peers", kind, "--port", str(port)], port, log_path=log_path
    )


def medplum_available() -> str:
    """'' when the Node peer can run, else why not."""
    if not shutil.which("node"):
        return "node is not installed"
    if not (MEDPLUM_DIR / "node_modules" / "@medplum" / "hl7").is_dir() and not shutil.which("npm"):
        return "npm is not installed"
    return ""


def install_medplum(log: list[str]) -> None:
    """`npm install --prefix bench/peers/medplum` unless @medplum/hl7 is already there."""
    if (MEDPLUM_DIR / "node_modules" / "@medplum" / "hl7" / "package.json").is_file():
        return
    cmd = ["npm", "install", "--prefix", str(MEDPLUM_DIR), "--no-audit", "--no-fund", "--loglevel=error"]
    log.append(" ".join(cmd))
    subprocess.run(cmd, check=True, cwd=REPO, stdout=subprocess.DEVNULL)


def medplum_version() -> str:
    import json

    path = MEDPLUM_DIR / "node_modules" / "@medplum" / "hl7" / "package.json"
    try:
        return str(json.loads(path.read_text(encoding="utf-8"))["version"])
    except (OSError, ValueError, KeyError):
        return "?"


def medplum_peer(port: int, log_path: Path | None) -> PeerProcess:
    return PeerProcess(
        "medplum", ["node", str(MEDPLUM_DIR / "server.js"), str(port)], port, log_path=log_path
    )


if __name__ == "__main__":
    raise SystemExit(main())

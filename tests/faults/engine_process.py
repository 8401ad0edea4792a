"""Tools of the fault tests: the engine as a real process, a lock-step MLLP stream, a TCP
proxy that can refuse connections, the `mch-engine` commands, and broker clean-up.

The engine runs as `python -m engine.cli run --config …`, the way a hospital runs it, so a
test can SIGKILL it mid-stream and start it again on the same journal, queues and ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from kombu import Exchange

from channels.mllp.ack import parse_ack
from channels.mllp.client import MllpConnection
from engine.bus import Bus
from support import AMQP_URL, REPO, free_port

ENGINE_START_TIMEOUT = 45.0


def engine_env() -> dict[str, str]:
    """The environment of an engine or CLI process: this repository, English operator text."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCH_")}
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["MCH_LANG"] = "en"
    env["PYTHONUNBUFFERED"] = "1"
    return env


class EngineProcess:
    """`mch-engine run` as a child process; stderr (the JSON log) goes to a file beside the config."""

    def __init__(self, routes: Path, name: str = "engine") -> None:
        self.routes = routes
        self.workdir = routes.parent
        self.name = name
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self.ports: dict[str, int] = {}
        self.starts = 0
        self._running = threading.Event()
        self._log_path = self.workdir / f"{name}.log"
        self._reader: threading.Thread | None = None

    # lifecycle -----------------------------------------------------------------------

    def start(
        self, timeout: float = ENGINE_START_TIMEOUT, env: dict[str, str] | None = None
    ) -> EngineProcess:
        """Start and wait until it listens; `env` adds variables for this start only
        (e.g. a failpoint, core/failpoints.py)."""
        assert self.proc is None or self.proc.poll() is not None, "engine already running"
        self.starts += 1
        self._running.clear()
        self.lines = []
        with open(self._log_path, "a", encoding="utf-8") as log:  # the child keeps its own copy
            log.write(f"\n===== start #{self.starts} =====\n")
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "engine.cli", "run", "--config", str(self.routes)],
                cwd=self.workdir,
                env={**engine_env(), **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                encoding="utf-8",
            )
        self._reader = threading.Thread(target=self._read_stdout, args=(self.proc,), daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while not self._running.wait(0.05):
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"engine exited with {self.proc.returncode} before it was running\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"engine not running within {timeout}s\n{self.log_tail()}")
        return self

    def _read_stdout(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        with proc.stdout:
            for line in proc.stdout:
                self.lines.append(line.rstrip("\n"))
                if line.startswith("engine running"):
                    # "engine running: hospital → 127.0.0.1:40123, lis_gbk → 127.0.0.1:40124. …"
                    found = re.findall(r"([a-z0-9_-]+) → (?:\S*:)?(\d+)\b", line)
                    self.ports = {name: int(port) for name, port in found}
                    self._running.set()

    def _reaped(self) -> None:
        assert self.proc is not None
        self.proc.wait(15)
        if self._reader is not None:
            self._reader.join(15)

    def port(self, channel: str = "hospital") -> int:
        return self.ports[channel]

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_dead(self, timeout: float = 30.0) -> int:
        """Wait for the engine to end by itself (a failpoint); returns its exit code."""
        assert self.proc is not None
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"engine still running after {timeout}s\n{self.log_tail()}") from None
        self._reaped()
        return int(self.proc.returncode)

    def kill(self) -> None:
        """SIGKILL: no goodbye, no flush, no answer for what is in flight."""
        if self.alive():
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            self._reaped()

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, as an operator stops it; returns the exit code."""
        assert self.proc is not None
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(f"engine ignored SIGTERM for {timeout}s\n{self.log_tail()}") from None
        self._reaped()
        return int(self.proc.returncode)

    def __enter__(self) -> EngineProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()

    def log_tail(self, n: int = 15, width: int = 300) -> str:
        try:
            text = self._log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "engine stderr (last lines):\n" + "\n".join(ln[:width] for ln in text.splitlines()[-n:])


# --------------------------------------------------------------------------- MLLP stream


class LockStepStream:
    """Sends payloads over several lock-step connections in a thread of its own.

    Message i goes on connection i % connections, in order. `codes[i]` is MSA-1 of the ACK
    message i got, or None when it got none: the connection failed before the answer (that
    message and every later one of that connection count as not acknowledged, and the later
    ones are not sent). `answered` counts ACKs as they come, so a test can act mid-stream.
    With `hold_at` (one index or several), messages from each hold on wait until `release()`
    has been called once for it and for every earlier hold.
    """

    def __init__(
        self,
        port: int,
        payloads: Sequence[bytes],
        control_ids: Sequence[str],
        *,
        connections: int = 8,
        timeout: float = 20.0,
        host: str = "127.0.0.1",
        hold_at: int | Sequence[int] = (),
    ) -> None:
        assert len(payloads) == len(control_ids)
        self.host, self.port = host, port
        self.payloads = payloads
        self.control_ids = control_ids
        self.connections = connections
        self.timeout = timeout
        self.codes: list[str | None] = [None] * len(payloads)
        self.answered_at: list[float | None] = [None] * len(payloads)  # time.monotonic()
        self.errors: list[str] = []
        self.answered = 0
        self.seconds = 0.0
        self.holds = sorted([hold_at] if isinstance(hold_at, int) else hold_at)
        self._released = 0  # how many holds, lowest first, are open
        self._thread = threading.Thread(target=self._main, name="mllp-stream", daemon=True)

    def start(self) -> LockStepStream:
        self._thread.start()
        return self

    def release(self, *, every: bool = False) -> None:
        """Opens the lowest hold still closed, or with `every` all of them."""
        self._released = len(self.holds) if every else self._released + 1

    def _held(self, i: int) -> bool:
        return any(i >= hold for hold in self.holds[self._released :])

    def join(self, timeout: float = 120.0) -> LockStepStream:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the MLLP stream did not finish within {timeout}s"
        return self

    def run(self, timeout: float = 120.0) -> LockStepStream:
        return self.start().join(timeout)

    def _main(self) -> None:
        started = time.perf_counter()
        asyncio.run(self._all())
        self.seconds = time.perf_counter() - started

    async def _all(self) -> None:
        await asyncio.gather(*(self._one(c) for c in range(self.connections)))

    async def _one(self, c: int) -> None:
        conn: MllpConnection | None = None
        try:
            for i in range(c, len(self.payloads), self.connections):
                while self._held(i):
                    await asyncio.sleep(0.01)
                if conn is None:
                    conn = await asyncio.wait_for(MllpConnection.open(self.host, self.port), self.timeout)
                ack = await conn.send(self.payloads[i], self.timeout)
                info = parse_ack(ack.decode("utf-8", errors="replace"))
                if info.control_id != self.control_ids[i]:
                    self.errors.append(f"#{i}: ACK for {info.control_id!r}, sent {self.control_ids[i]!r}")
                    return
                self.codes[i] = info.code
                self.answered_at[i] = time.monotonic()
                self.answered += 1
        except (OSError, ConnectionError, TimeoutError, asyncio.IncompleteReadError) as exc:
            self.errors.append(f"connection {c}: {type(exc).__name__}: {exc}")
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()

    def indexes(self, code: str | None) -> list[int]:
        return [i for i, c in enumerate(self.codes) if c == code]

    def answered_between(self, start: float, end: float) -> list[int]:
        return [i for i, t in enumerate(self.answered_at) if t is not None and start <= t <= end]

    def resend_unanswered(self, port: int, connections: int = 4) -> LockStepStream:
        """Send again, to `port`, what got no answer (as the senders do); each must get AA."""
        left = self.unanswered
        again = LockStepStream(
            port,
            [self.payloads[i] for i in left],
            [self.control_ids[i] for i in left],
            connections=connections,
        ).run(60)
        assert again.codes == ["AA"] * len(left), f"resend: {set(again.codes)} {again.errors[:3]}"
        return again

    @property
    def acked(self) -> list[int]:
        return self.indexes("AA")

    @property
    def unanswered(self) -> list[int]:
        return self.indexes(None)


def send_stream(
    port: int, payloads: Sequence[bytes], control_ids: Sequence[str], *, connections: int = 8
) -> LockStepStream:
    """Send everything and wait for the end of the stream."""
    return LockStepStream(port, payloads, control_ids, connections=connections).run()


# --------------------------------------------------------------------------- TCP proxy


class RefusingProxy:
    """A TCP proxy on 127.0.0.1 (real bytes to a real server) that can refuse for a while.

    `refuse()` closes the listening socket (new connections get ECONNREFUSED) and cuts every
    open connection; `accept()` listens on the same port again.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.accepted = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    def __enter__(self) -> RefusingProxy:
        self._thread.start()
        self.accept()
        return self

    def __exit__(self, *exc: object) -> None:
        self.refuse()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(15)

    def accept(self) -> None:
        self._call(self._listen())

    def refuse(self) -> None:
        self._call(self._refuse())

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(
                self._handle, "127.0.0.1", self.port, reuse_address=True
            )

    async def _refuse(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._open |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, ConnectionError):
                pass
            finally:
                dst.transport.abort()
                self._open.discard(dst)

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


# --------------------------------------------------------------------------- CLI


def mch(config: Path, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """`mch-engine --lang en ARGS --config CONFIG`, as the on-call runs it."""
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", "--lang", "en", *args, "--config", str(config)],
        cwd=config.parent,
        env=engine_env(),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
    )


def mch_json(config: Path, *args: str) -> list[dict[str, Any]]:
    """The JSON lines a `--json` command prints (exit code 0 required)."""
    done = mch(config, *args, "--json")
    assert done.returncode == 0, f"mch-engine {' '.join(args)} exited {done.returncode}: {done.stderr}"
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


# --------------------------------------------------------------------------- RabbitMQ


def rabbitmqctl(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout)


def broker_queues(prefix: str) -> dict[str, int]:
    """Queues whose name starts with `prefix.` and their ready message counts (rabbitmqctl)."""
    done = rabbitmqctl("list_queues", "-q", "--no-table-headers", "name", "messages")
    out: dict[str, int] = {}
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].startswith(prefix + "."):
            out[parts[0]] = int(parts[1])
    return out


def delete_broker_objects(prefix: str, destinations: Sequence[str], known: Sequence[str] = ()) -> None:
    """Delete every queue and exchange the engine declared under `prefix`.

    The destination queues through `Bus.queue_for`, then any other queue of the prefix
    (retry tiers, partitions) that rabbitmqctl lists or the test names in `known`.
    """
    bus = Bus(AMQP_URL, prefix)
    try:
        for dest in destinations:
            with contextlib.suppress(Exception):
                bus.queue_for(dest)(bus._conn.default_channel).delete()
        names = set(known)
        for _ in range(2):  # again for anything the first pass missed
            with contextlib.suppress(Exception):
                names |= set(broker_queues(prefix))
            for name in sorted(names):
                try:
                    bus._conn.default_channel.queue_delete(name)
                except Exception:  # a channel error closes the channel: take a new one
                    with contextlib.suppress(Exception):
                        bus._conn.default_channel.close()
                    bus._conn._default_channel = None
            names = set()
        for exchange in (f"{prefix}.records", f"{prefix}.retry"):
            with contextlib.suppress(Exception):
                Exchange(exchange)(bus._conn.default_channel).delete()
    finally:
        bus.close()


def poll(check: Callable[[], Any], timeout: float, interval: float = 0.1) -> Any:
    """`check()` until it is truthy or `timeout` seconds pass; its last value either way."""
    deadline = time.monotonic() + timeout
    value = check()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = check()
    return value


def wait_for(
    check: Callable[[], Any],
    timeout: float,
    what: str,
    engine: EngineProcess | None = None,
    describe: Callable[[], Any] | None = None,
) -> Any:
    """`support.wait_until` that says what was awaited, what it saw (`describe`) and the engine's log."""
    value = poll(check, timeout)
    if not value:
        seen = f"; {describe()}" if describe is not None else ""
        tail = "\n" + engine.log_tail() if engine is not None else ""
        raise AssertionError(f"{what}: not within {timeout}s (last value {value!r}{seen}){tail}")
    return value

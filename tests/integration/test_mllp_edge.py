"""The MLLP listener's edge over real sockets: TLS (with and without client certificates), the
sender allow-list, connection limits, and the per-frame deadline against a slow-drip sender.

Certificates are made with `cryptography` (tests/tls_material.py): a hospital CA, the engine's
certificate, a client certificate from that CA, and one from another CA that must be refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from tls_material import Material, make_material

from channels.mllp.client import MllpConnection
from channels.mllp.framing import Frame, MllpDecoder, frame
from channels.mllp.tls import client_context
from core.errors import ConfigErrors
from core.settings import load_settings
from engine.check import check_config
from engine.cli import main
from monitors.engine_status import collect
from monitors.metrics import families
from monitors.process_monitor import ProcessMonitor
from monitors.status_command import render
from support import ENGINE_LOG, REPORT, RunningEngine, hl7, msa, scalar, wait_until, write_routes

# ---------------------------------------------------------------------------- the engine


def adt(control_id: str) -> bytes:
    """A registration no route maps to a record: only the ACK matters here."""
    return hl7(f"MSH|^~\\&|HIS|FY01|MCHENGINE|FY01|20240321083200||ADT^A28^ADT_A05|{control_id}|P|2.5")


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> Material:
    return make_material(tmp_path_factory.mktemp("edge") / "tls")


@pytest.fixture(scope="module")
def engine(material: Material) -> Iterator[RunningEngine]:
    tmp = material.folder.parent
    tls = "{certificate: tls/engine.crt, key: tls/engine.key}"
    mtls = "{certificate: tls/engine.crt, key: tls/engine.key, client_ca: tls/hospital-ca.crt}"
    channels = {
        "hospital": {"encoding": "utf-8", "frame_deadline": "1s"},
        "secure": {"tls": tls},
        "mutual": {"tls": mtls},
        "fenced": {"allow": "[10.1.2.0/24, 10.1.3.7]"},
        "admitted": {"allow": "[10.1.2.0/24, 127.0.0.0/8, '::1']"},
        "per_channel": {"max_connections": 2},
        "per_address": {"max_connections_per_address": 1},
    }
    routes = write_routes(tmp, database=f"sqlite:///{tmp}/engine.db", channels=channels)
    with RunningEngine(routes) as running:
        yield running


def counters(engine: RunningEngine, channel: str) -> dict[str, int]:
    [source] = [s for s in engine.runtime.sources if s.name == channel]
    return dict(source.counters.closed)


def exchange(port: int, payload: bytes, tls: ssl.SSLContext | None = None, **kw: object) -> bytes:
    async def go() -> bytes:
        conn = await MllpConnection.open("127.0.0.1", port, tls, **kw)  # type: ignore[arg-type]
        try:
            return await conn.send(payload, timeout=5)
        finally:
            await conn.close()

    return asyncio.run(go())


def closed_at_once(port: int, source: str = "127.0.0.1") -> bool:
    """A connection the engine hangs up on without reading: EOF (or a reset) within a second."""
    with socket.create_connection(("127.0.0.1", port), timeout=2, source_address=(source, 0)) as sock:
        sock.settimeout(1.0)
        try:
            return sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False


def held_open(port: int, source: str = "127.0.0.1") -> socket.socket:
    """A connection the engine has taken (an ACK proves it)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
    sock.sendall(frame(adt(f"HOLD-{source}-{time.monotonic_ns()}")))
    decoder = MllpDecoder(1 << 20)
    while not any(isinstance(e, Frame) for e in decoder.feed(sock.recv(65536))):
        pass
    return sock


# ---------------------------------------------------------------------------- TLS


def test_tls_round_trip_is_acknowledged(engine: RunningEngine, material: Material) -> None:
    ctx = client_context(str(material.ca))
    ack = exchange(engine.port("secure"), adt("TLS-1"), ctx)
    assert msa(ack)[:2] == ("AA", "TLS-1")
    # Checked by name as well as by address: the certificate carries both.
    ack = exchange(engine.port("secure"), adt("TLS-2"), ctx, server_name="localhost")
    assert msa(ack)[:2] == ("AA", "TLS-2")


def test_plain_text_to_a_tls_port_fails_cleanly_and_the_engine_keeps_serving(
    engine: RunningEngine, material: Material
) -> None:
    port = engine.port("secure")
    mark = ENGINE_LOG.mark()
    before = counters(engine, "secure")["tls_failed"]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(frame(adt("PLAIN-1")))
        sock.settimeout(5)
        try:
            answer = sock.recv(65536)
        except ConnectionResetError:
            answer = b""
        assert b"MSA" not in answer  # no ACK: the bytes were never read as HL7
    wait_until(lambda: counters(engine, "secure")["tls_failed"] == before + 1, timeout=5)
    [event] = ENGINE_LOG.events(since=mark, name="mllp_tls_failed")
    assert event["channel"] == "secure" and event["peer"].startswith("127.0.0.1:") and event["reason"]
    ack = exchange(port, adt("TLS-AFTER-PLAIN"), client_context(str(material.ca)))
    assert msa(ack)[:2] == ("AA", "TLS-AFTER-PLAIN")


def test_client_certificate_is_required_and_verified(engine: RunningEngine, material: Material) -> None:
    port = engine.port("mutual")
    ca = str(material.ca)
    ack = exchange(
        port, adt("MTLS-1"), client_context(ca, str(material.client_cert), str(material.client_key))
    )
    assert msa(ack)[:2] == ("AA", "MTLS-1")
    before = counters(engine, "mutual")["tls_failed"]
    for refused in (
        client_context(ca),  # no client certificate
        client_context(ca, str(material.stranger_cert), str(material.stranger_key)),  # another CA
    ):
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            exchange(port, adt("MTLS-REFUSED"), refused)
    wait_until(lambda: counters(engine, "mutual")["tls_failed"] == before + 2, timeout=5)
    ack = exchange(
        port, adt("MTLS-2"), client_context(ca, str(material.client_cert), str(material.client_key))
    )
    assert msa(ack)[:2] == ("AA", "MTLS-2")


def test_send_command_tests_a_tls_channel(
    engine: RunningEngine, material: Material, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    message = tmp_path / "a.hl7"
    message.write_bytes(adt("SEND-TLS-1"))
    to = ["--to", f"127.0.0.1:{engine.port('mutual')}", "--tls-ca", str(material.ca)]
    client = ["--tls-cert", str(material.client_cert), "--tls-key", str(material.client_key)]
    assert main(["--lang", "en", "send", str(message), *to, *client]) == 0
    assert "AA  control-id=SEND-TLS-1" in capsys.readouterr().out
    assert main(["--lang", "en", "send", str(message), *to]) != 0  # no client certificate
    assert "AA" not in capsys.readouterr().out
    assert main(["--lang", "en", "send", str(message), *to, "--tls-cert", str(tmp_path / "none.crt")]) == 2
    assert "TLS certificate or key cannot be used" in capsys.readouterr().err


@pytest.mark.parametrize("problem", ["mode", "mismatch"])
def test_a_bad_key_is_refused_at_start_and_by_check(tmp_path: Path, problem: str) -> None:
    material = make_material(tmp_path / "tls")
    key = material.server_key
    if problem == "mode":
        key.chmod(0o644)
    else:
        key.write_bytes(material.client_key.read_bytes())
        key.chmod(0o600)
    tls = "{certificate: tls/engine.crt, key: tls/engine.key}"
    routes = write_routes(tmp_path, database=f"sqlite:///{tmp_path}/e.db", channels={"secure": {"tls": tls}})
    problems = [str(p) for p in check_config(routes)]
    with pytest.raises(ConfigErrors) as refused:
        load_settings(routes)
    secret = key.read_text().splitlines()[1]
    for text in (*problems, str(refused.value)):
        assert "channels.secure.tls" in text and secret not in text
    expected = f"chmod 600 {key}" if problem == "mode" else "does not match certificate"
    assert len(problems) == 1 and expected in problems[0]
    assert expected in str(refused.value)


# ---------------------------------------------------------------------------- who may connect


def test_allow_list_refuses_others_and_admits_its_own(engine: RunningEngine) -> None:
    mark = ENGINE_LOG.mark()
    assert closed_at_once(engine.port("fenced"))
    assert counters(engine, "fenced")["not_allowed"] >= 1
    [event] = ENGINE_LOG.events(since=mark, name="mllp_connection_refused")
    assert (event["channel"], event["reason"]) == ("fenced", "not_allowed")
    assert event["peer"].startswith("127.0.0.1:")
    ack = exchange(engine.port("admitted"), adt("ALLOWED-1"))
    assert msa(ack)[:2] == ("AA", "ALLOWED-1")
    assert counters(engine, "admitted")["not_allowed"] == 0


def test_connection_limits_per_channel_and_per_address(engine: RunningEngine) -> None:
    per_channel, per_address = engine.port("per_channel"), engine.port("per_address")
    held = [held_open(per_channel, "127.0.0.1"), held_open(per_channel, "127.0.0.2")]
    try:
        assert closed_at_once(per_channel, "127.0.0.3")  # a third, from any address
        assert counters(engine, "per_channel")["over_limit"] == 1
        held[0].sendall(frame(adt("STILL-OPEN")))  # the two taken go on as before
        assert b"STILL-OPEN" in held[0].recv(65536)
    finally:
        for sock in held:
            sock.close()
    wait_until(lambda: not closed_at_once(per_channel, "127.0.0.3"), timeout=5)

    first = held_open(per_address, "127.0.0.1")
    try:
        assert closed_at_once(per_address, "127.0.0.1")
        assert counters(engine, "per_address")["over_limit"] == 1
        other = held_open(per_address, "127.0.0.2")  # another sender still gets in
        other.close()
    finally:
        first.close()


# ---------------------------------------------------------------------------- slow senders


def test_slow_drip_sender_is_cut_while_a_normal_sender_is_answered(engine: RunningEngine) -> None:
    """frame_deadline 1 s; one byte every 0.2 s would take ~20 s for this frame."""
    port = engine.port("hospital")
    mark = ENGINE_LOG.mark()
    payload = frame(adt("DRIP-1"))

    async def drip() -> float:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = time.monotonic()
        try:
            for byte in payload:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.2)
                if reader.at_eof():
                    break
            while await reader.read(65536):  # the AR for the cut-off frame, then EOF
                pass
        except ConnectionError:  # cut while bytes were still unread: a reset
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        return time.monotonic() - started

    async def normal() -> list[str]:
        conn = await MllpConnection.open("127.0.0.1", port)
        codes = []
        for i in range(8):
            codes.append(msa(await conn.send(adt(f"STEADY-{i}"), timeout=5))[0])
            await asyncio.sleep(0.25)
        await conn.close()
        return codes

    async def both() -> tuple[float, list[str]]:
        return await asyncio.gather(drip(), normal())

    cut_after, codes = asyncio.run(both())
    assert codes == ["AA"] * 8
    assert cut_after < 3.0
    [event] = ENGINE_LOG.events(since=mark, name="mllp_frame_deadline")
    assert event["channel"] == "hospital" and event["deadline"] == 1.0
    assert counters(engine, "hospital")["frame_deadline"] == 1
    # What arrived of the cut-off frame is kept, as for a connection closed in mid-frame.
    rejected = "select count(*) from journal_messages where channel = 'hospital' and status = 'rejected'"
    assert wait_until(lambda: scalar(engine.journal, rejected) == 1, timeout=5)
    REPORT.append(f"mllp edge: slow-drip sender cut after {cut_after:.2f} s (frame_deadline 1 s)")


def test_the_counts_reach_status_and_metrics(engine: RunningEngine) -> None:
    assert closed_at_once(engine.port("fenced"))
    refused = counters(engine, "fenced")["not_allowed"]
    monitor = ProcessMonitor(engine.runtime)
    monitor.refresh()
    engine.runtime.heartbeat.write_now()
    status = collect(engine.settings)
    closed = {c.name: c.connections_closed for c in status.channels}
    assert closed["fenced"]["not_allowed"] == refused >= 1
    samples = {
        (s.labels["channel"], s.labels["reason"]): s.value
        for family in families(status)
        if family.name == "mch_connections_closed"
        for s in family.samples
        if s.name.endswith("_total")
    }
    assert samples[("fenced", "not_allowed")] == refused and samples[("admitted", "not_allowed")] == 0
    reasons = {"not_allowed", "over_limit", "tls_failed", "frame_deadline"}
    assert {r for c, r in samples if c == "secure"} == reasons  # every series from the start
    lines = render(status, ZoneInfo("Asia/Shanghai")).splitlines()
    header = next(line.split() for line in lines if line.startswith("通道 "))
    row = next(line.split() for line in lines if line.startswith("fenced "))
    assert header[4] == "断开连接" and row[4] == str(refused)

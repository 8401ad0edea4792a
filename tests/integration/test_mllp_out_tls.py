"""`mllp_out` over TLS against a real TLS receiver: delivered when the receiver's certificate
verifies, retried then dead-lettered with the reason when it does not, a client certificate
presented when configured; and `check` on the block's files."""

from __future__ import annotations

import ssl
from pathlib import Path

from mllp_receiver import Answer, MllpReceiver
from tls_material import Material, make_material

from engine.check import check_config
from support import (
    ENGINE_LOG,
    REPORT,
    RunningEngine,
    attempt_errors,
    dead_letter_reasons,
    delivery_rows,
    oru,
    wait_until,
    write_routes,
)

RETRY = "retry: {tiers: [0.2s], max_attempts: 2}\n"


def receiver_context(material: Material, cert: Path, key: Path, *, client_ca: bool = False) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    if client_ca:
        ctx.load_verify_locations(cafile=material.ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def routes(folder: Path, endpoint: str, tls: str) -> Path:
    """Lab results go to `regional`, an mllp_out over TLS; files relative to routes.yaml."""
    destination = f"{{type: mllp_out, endpoint: '{endpoint}', connect_timeout: 2s, tls: {tls}}}"
    return write_routes(
        folder,
        database=f"sqlite:///{folder}/engine.db",
        lab_to="regional",
        extra=f"  regional: {destination}\n{RETRY}",
    )


def test_delivered_over_tls_to_a_receiver_the_ca_vouches_for(tmp_path: Path) -> None:
    material = make_material(tmp_path / "tls")
    ctx = receiver_context(material, material.server_cert, material.server_key)
    message = oru("ORU-TLS-1", "F-TLS-1", "0010099101")
    with (
        MllpReceiver(lambda payload, n: Answer("AA"), tls=ctx) as rx,
        RunningEngine(routes(tmp_path, rx.endpoint, "{ca: tls/hospital-ca.crt}")) as engine,
    ):
        engine.send([message])
        wait_until(lambda: delivery_rows(engine, "regional") == [("delivered", 1)])
        assert rx.received == [message]
        assert rx.client_names == [None]  # none asked for, none presented


def test_an_untrusted_receiver_is_retried_then_a_dead_letter_saying_why(tmp_path: Path) -> None:
    """A receiver whose certificate another CA signed: no frame leaves, each attempt fails the
    handshake, the reason is logged and recorded, and the message ends in dead letters."""
    material = make_material(tmp_path / "tls")
    ctx = receiver_context(material, material.stranger_cert, material.stranger_key)
    mark = ENGINE_LOG.mark()
    with (
        MllpReceiver(lambda payload, n: Answer("AA"), tls=ctx) as rx,
        RunningEngine(routes(tmp_path, rx.endpoint, "{ca: tls/hospital-ca.crt}")) as engine,
    ):
        engine.send([oru("ORU-TLS-2", "F-TLS-2", "0010099102")])
        wait_until(lambda: delivery_rows(engine, "regional") == [("dead", 2)])
        errors = attempt_errors(engine)
        assert rx.received == []
    why = f"TLS handshake with {rx.endpoint} failed: certificate verify failed"
    assert len(errors) == 2 and all(why in e for e in errors), errors
    (reason,) = dead_letter_reasons(engine)
    assert why in reason
    logged = ENGINE_LOG.events(since=mark, name="mllp_out_tls_failed")
    assert len(logged) == 2 and "certificate verify failed" in logged[0]["reason"]
    REPORT.append(f"mllp_out TLS refusal reason: {errors[0]}")


def test_a_client_certificate_is_presented_when_configured(tmp_path: Path) -> None:
    material = make_material(tmp_path / "tls")
    ctx = receiver_context(material, material.server_cert, material.server_key, client_ca=True)
    tls = "{ca: tls/hospital-ca.crt, certificate: tls/his.crt, key: tls/his.key, server_name: localhost}"
    with (
        MllpReceiver(lambda payload, n: Answer("AA"), tls=ctx) as rx,
        RunningEngine(routes(tmp_path, rx.endpoint, tls)) as engine,
    ):
        engine.send([oru("ORU-TLS-3", "F-TLS-3", "0010099103")])
        wait_until(lambda: delivery_rows(engine, "regional") == [("delivered", 1)])
        assert rx.client_names == ["his-sender"]


def test_check_refuses_a_key_open_to_others_and_a_certificate_without_its_key(tmp_path: Path) -> None:
    material = make_material(tmp_path / "tls")
    material.client_key.chmod(0o644)
    tls = "{certificate: tls/his.crt, key: tls/his.key}"
    problems = [str(p) for p in check_config(routes(tmp_path, "127.0.0.1:1", tls))]
    assert any("destinations.regional.tls: key file" in p and "his.key" in p for p in problems), problems
    problems = [str(p) for p in check_config(routes(tmp_path, "127.0.0.1:1", "{certificate: tls/his.crt}"))]
    assert any("`certificate` and `key` go together" in p for p in problems), problems
    material.client_key.chmod(0o600)
    assert check_config(routes(tmp_path, "127.0.0.1:1", tls)) == []

"""A listener's certificate renewed in place is picked up by `mch-engine reload`: `check --diff`
lists the channel, new connections get the new certificate, an open one keeps working."""

from __future__ import annotations

import socket
from pathlib import Path

from faults.engine_process import mch
from test_live_reload import Sender
from tls_material import make_material, renew_server

from channels.mllp.tls import client_context
from support import RunningEngine, hl7, msa, write_routes


def adt(control_id: str) -> bytes:
    return hl7(f"MSH|^~\\&|HIS|FY01|MCHENGINE|FY01|20240321083200||ADT^A28^ADT_A05|{control_id}|P|2.5")


class TlsSender(Sender):
    """One MLLP-over-TLS connection, kept open across the reload."""

    def __init__(self, port: int, ca: Path) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock = client_context(str(ca)).wrap_socket(raw, server_hostname="127.0.0.1")

    @property
    def subject(self) -> str:
        """The CN of the certificate the engine showed this connection."""
        cert = self.sock.getpeercert() or {}
        return next(v for rdn in cert["subject"] for k, v in rdn if k == "commonName")


def test_a_renewed_certificate_is_used_by_new_connections_after_reload(tmp_path: Path) -> None:
    material = make_material(tmp_path / "tls")
    tls = "{certificate: tls/engine.crt, key: tls/engine.key}"
    routes = write_routes(tmp_path, database=f"sqlite:///{tmp_path}/e.db", channels={"secure": {"tls": tls}})
    with RunningEngine(routes) as engine:
        port = engine.port("secure")
        before = TlsSender(port, material.ca)
        try:
            assert before.subject == "mch-engine"
            assert msa(before.send(adt("RENEW-1")))[:2] == ("AA", "RENEW-1")

            renew_server(material, "mch-engine renewed")
            plan = mch(routes, "check", "--diff")
            assert plan.returncode == 0, plan.stderr
            assert "secure" in plan.stdout and "tls.certificate.content" in plan.stdout, plan.stdout
            assert "tls.key.content" in plan.stdout

            done = mch(routes, "reload")
            assert done.returncode == 0, done.stdout + done.stderr
            assert "tls.certificate.content" in done.stdout

            after = TlsSender(port, material.ca)
            try:
                assert after.subject == "mch-engine renewed"
                assert msa(after.send(adt("RENEW-2")))[:2] == ("AA", "RENEW-2")
            finally:
                after.close()
            # The connection opened before the reload is the same one, still answered.
            assert before.subject == "mch-engine"
            assert msa(before.send(adt("RENEW-3")))[:2] == ("AA", "RENEW-3")
            again = mch(routes, "reload")
            assert "nothing changed" in again.stdout, again.stdout
        finally:
            before.close()

"""The `mllp_out` destination over real sockets: into a second engine, and into a receiver
that answers as each test scripts it (AE then AA, AR, silence)."""

from __future__ import annotations

import threading
from pathlib import Path

from mllp_receiver import Answer, MllpReceiver

from channels.mllp.ack import parse_ack
from support import (
    REPO,
    RunningEngine,
    adt,
    dead_letter_reasons,
    delivery_rows,
    free_port,
    oru,
    scalar,
    wait_until,
    write_routes,
)

FAST_RETRY = "retry: {tiers: [0.2s], max_attempts: 3}\n"


def routes_to(tmp_path: Path, destination: str, *, name: str = "a", retry: str = FAST_RETRY) -> Path:
    """Engine `name`: lab results go to `regional` (an mllp_out given as flow YAML), persons to its store."""
    folder = tmp_path / name
    folder.mkdir()
    return write_routes(
        folder,
        database=f"sqlite:///{folder}/engine.db",
        lab_to="regional",
        extra=f"  regional: {destination}\n{retry}",
    )


class TestIntoAnotherEngine:
    def test_a_lab_result_forwarded_ends_in_the_other_engines_record_store(self, tmp_path: Path) -> None:
        """Engine A journals and ACKs the ORU, forwards its original bytes to engine B's MLLP
        channel; B journals the same bytes and stores the LabResult in its own store."""
        b_folder = tmp_path / "b"
        b_folder.mkdir()
        b_routes = write_routes(b_folder, database=f"sqlite:///{b_folder}/engine.db")
        message = oru("ORU-FWD-1", "F-FWD-1", "0010099001")
        with RunningEngine(b_routes) as b:
            a_routes = routes_to(tmp_path, f"{{type: mllp_out, endpoint: '127.0.0.1:{b.port()}'}}")
            with RunningEngine(a_routes) as a:
                assert parse_ack(a.send([message])[0].decode()).code == "AA"
                wait_until(lambda: delivery_rows(a, "regional") == [("delivered", 1)])
                stored = wait_until(
                    lambda: scalar(
                        b.store(),
                        "select record_type from records where record_id = :r",
                        r="lab:LIS:10:F-FWD-1",
                    )
                )
                assert stored == "LabResult"
                assert scalar(b.journal, "select raw from journal_messages") == message
                assert scalar(b.journal, "select count(*) from journal_messages") == 1
                # A's own store never saw the lab result: it went to the other engine only.
                assert scalar(a.store(), "select count(*) from records where record_type = 'LabResult'") == 0


class TestAnswers:
    def test_ae_then_aa_is_retried_and_delivered(self, tmp_path: Path) -> None:
        """AE is transient: the message waits in the retry tier, is sent again and delivered on AA."""
        with (
            MllpReceiver(
                lambda payload, n: Answer("AE", "busy, try later") if n == 1 else Answer("AA")
            ) as rx,
            RunningEngine(routes_to(tmp_path, f"{{type: mllp_out, endpoint: '{rx.endpoint}'}}")) as a,
        ):
            a.send([oru("ORU-AE-1", "F-AE-1", "0010099002")])
            wait_until(lambda: delivery_rows(a, "regional") == [("delivered", 2)])
            assert [r for r in rx.received] == [rx.received[0]] * 2
            errors = [
                e for (e,) in a.journal.connect().exec_driver_sql("select error from delivery_attempts")
            ]
            assert len(errors) == 1 and "answered AE" in errors[0] and "busy, try later" in errors[0]
            assert dead_letter_reasons(a) == []

    def test_ar_is_a_dead_letter_quoting_the_receiver(self, tmp_path: Path) -> None:
        """AR is permanent: one send, then a dead letter whose reason says who rejected what and why."""
        with (
            MllpReceiver(lambda payload, n: Answer("AR", "PID-3 unknown patient identifier type")) as rx,
            RunningEngine(routes_to(tmp_path, f"{{type: mllp_out, endpoint: '{rx.endpoint}'}}")) as a,
        ):
            a.send([oru("ORU-AR-1", "F-AR-1", "0010099003")])
            wait_until(lambda: delivery_rows(a, "regional") == [("dead", 1)])
            (reason,) = dead_letter_reasons(a)
        assert f"{rx.endpoint} rejected MSH-10 'ORU-AR-1' with AR" in reason
        assert "PID-3 unknown patient identifier type" in reason
        assert len(rx.received) == 1

    def test_silence_is_a_timeout_retried_on_a_new_connection(self, tmp_path: Path) -> None:
        """No ACK within ack_timeout is transient; the retry opens a new connection and succeeds."""
        with MllpReceiver(lambda payload, n: Answer(None) if n == 1 else Answer("AA")) as rx:
            dest = f"{{type: mllp_out, endpoint: '{rx.endpoint}', ack_timeout: 0.5s}}"
            with RunningEngine(routes_to(tmp_path, dest)) as a:
                a.send([oru("ORU-TO-1", "F-TO-1", "0010099004")])
                wait_until(lambda: delivery_rows(a, "regional") == [("delivered", 2)])
                assert rx.connections == 2
                errors = [
                    e for (e,) in a.journal.connect().exec_driver_sql("select error from delivery_attempts")
                ]
                assert errors == [f"TransientDeliveryError: no ACK from {rx.endpoint} within 0.5s"]

    def test_nobody_listening_ends_in_dead_letters_after_the_attempts(self, tmp_path: Path) -> None:
        """A refused connection is transient; past max_attempts the message is a dead letter saying so."""
        port = free_port()
        with RunningEngine(routes_to(tmp_path, f"{{type: mllp_out, endpoint: '127.0.0.1:{port}'}}")) as a:
            a.send([oru("ORU-NC-1", "F-NC-1", "0010099005")])
            wait_until(lambda: delivery_rows(a, "regional") == [("dead", 3)])
            (reason,) = dead_letter_reasons(a)
            assert reason.startswith(f"TransientDeliveryError: cannot connect to 127.0.0.1:{port}")


class TestCharsets:
    def test_gb18030_target_gets_gb18030_bytes_and_msh18(self, tmp_path: Path) -> None:
        """A UTF-8 message sent to a GB18030 receiver: the name arrives as GB18030 bytes and
        MSH-18 says GB 18030-2000."""
        with MllpReceiver(lambda payload, n: Answer("AA")) as rx:
            dest = f"{{type: mllp_out, endpoint: '{rx.endpoint}', encoding: gb18030}}"
            with RunningEngine(routes_to(tmp_path, dest)) as a:
                a.send([oru("ORU-GB-1", "F-GB-1", "0010099006")])
                wait_until(lambda: delivery_rows(a, "regional") == [("delivered", 1)])
        (payload,) = rx.received
        assert "王小红".encode("gb18030") in payload
        assert "王小红".encode() not in payload
        msh = payload.decode("gb18030").split("\r")[0].split("|")
        assert msh[17] == "GB 18030-2000"
        assert msh[9] == "ORU-GB-1"

    def test_a_name_the_target_cannot_hold_is_a_dead_letter_naming_the_field(self, tmp_path: Path) -> None:
        """Sending 王小红 to a latin-1 receiver cannot work: a dead letter names PID-5, not the name,
        and nothing is sent."""
        with MllpReceiver(lambda payload, n: Answer("AA")) as rx:
            dest = f"{{type: mllp_out, endpoint: '{rx.endpoint}', encoding: latin-1}}"
            with RunningEngine(routes_to(tmp_path, dest)) as a:
                a.send([oru("ORU-L1-1", "F-L1-1", "0010099007")])
                wait_until(lambda: delivery_rows(a, "regional") == [("dead", 1)])
                (reason,) = dead_letter_reasons(a)
        assert "PID-5 holds a character iso8859-1 cannot encode" in reason
        assert "王" not in reason
        assert rx.received == []


TWO_PERSONS = """\
mapping: two-persons
description: one ADT, two Person records (the patient under two systems), for forwarding tests
records:
  - type: Person
    record_id: "person:A:{PID-3[1].1}"
    event_time: {first: [EVN-2, MSH-7], convert: hl7_datetime}
    fields:
      person:
        name: {path: "PID-5[1]", convert: chinese_name}
        his_id: PID-3[1].1
        his_system: MSH-3
  - type: Person
    record_id: "person:B:{PID-3[1].1}"
    event_time: {first: [EVN-2, MSH-7], convert: hl7_datetime}
    fields:
      person:
        name: {path: "PID-5[1]", convert: chinese_name}
        his_id: PID-3[1].1
        his_system: MSH-4
"""


class TestOncePerMessage:
    def test_a_message_of_two_records_in_two_partitions_is_sent_once(self, tmp_path: Path) -> None:
        """Two records of one message land in different partitions (different person keys); the
        message goes out once and both deliveries end delivered."""
        (tmp_path / "two_persons.yaml").write_text(TWO_PERSONS, encoding="utf-8")
        with MllpReceiver(lambda payload, n: Answer("AA")) as rx:
            port = free_port()
            routes = tmp_path / "routes.yaml"
            routes.write_text(
                "version: 1\n"
                f"engine: {{broker: 'memory://', database: 'sqlite:///{tmp_path}/engine.db',"
                f" allowed_paths: ['{REPO / 'mappings'}']}}\n"
                f"channels: {{hospital: {{type: mllp, listen: '127.0.0.1:{port}'}}}}\n"
                "routes:\n"
                "  - {name: forward, from: hospital, mapping: two_persons.yaml, to: regional}\n"
                "destinations:\n"
                f"  regional: {{type: mllp_out, endpoint: '{rx.endpoint}', partitions: 8}}\n" + FAST_RETRY,
                encoding="utf-8",
            )
            with RunningEngine(routes) as a:
                messages = [adt(f"ADT-2P-{i}", f"00100990{i:02d}") for i in range(10)]
                assert all(parse_ack(ack.decode()).code == "AA" for ack in a.send(messages))
                # A record whose message another partition is sending waits a retry tier: all
                # twenty end delivered, whatever their attempts.
                wait_until(lambda: [s for s, _ in delivery_rows(a, "regional")] == ["delivered"] * 20)
                lanes = {w.partition for w in a.runtime.workers}
        assert len(lanes) == 8
        assert sorted(rx.received) == sorted(messages)


class TestOrderAndPool:
    def test_one_persons_messages_leave_in_order_over_a_bounded_pool(self, tmp_path: Path) -> None:
        """Forty results of four persons through four partitions and two connections: each person's
        arrive in the order sent, and never more than two connections are open."""
        lock = threading.Lock()
        order: list[str] = []

        def answer(payload: bytes, n: int) -> Answer:
            with lock:
                order.append(payload.split(b"|")[9].decode())
            return Answer("AA")

        with MllpReceiver(answer) as rx:
            dest = f"{{type: mllp_out, endpoint: '{rx.endpoint}', connections: 2, partitions: 4}}"
            with RunningEngine(routes_to(tmp_path, dest)) as a:
                messages = [
                    oru(f"ORU-{p}-{i:02d}", f"F-{p}-{i}", f"00100981{p}") for i in range(10) for p in range(4)
                ]
                a.send(messages)
                wait_until(
                    lambda: (
                        len(delivery_rows(a, "regional")) == 40
                        and {s for s, _ in delivery_rows(a, "regional")} == {"delivered"}
                    )
                )
        assert rx.most_open <= 2
        for p in range(4):
            mine = [c for c in order if c.startswith(f"ORU-{p}-")]
            assert mine == sorted(mine) and len(mine) == 10

"""HL7 over real TCP → journal → ACK → mapping → bus → record store, on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support import (
    AMQP_URL,
    CHINESE,
    RunningEngine,
    hl7,
    msa,
    pg_schema,
    require_service,
    scalar,
    wait_until,
    write_routes,
)

ADT_A04 = hl7(
    "MSH|^~\\&|HIS|FY01|MCHENGINE|FY01|20240321083215||ADT^A04^ADT_A01|E2E-ADT-1|P|2.5|||AL|NE|CHN|UNICODE UTF-8",
    "EVN|A04|20240321083200",
    "PID|1||0010099001^^^HIS^PI~500112199403151525^^^^ID||王小红^^^^^^L||19940315|F",
)
ADT_A08 = hl7(
    "MSH|^~\\&|HIS|FY01|MCHENGINE|FY01|20240322090000||ADT^A08^ADT_A01|E2E-ADT-2|P|2.5|||AL|NE|CHN|UNICODE UTF-8",
    "EVN|A08|20240322085900",
    "PID|1||0010099001^^^HIS^PI~500112199403151525^^^^ID||王晓红^^^^^^L||19940315|F",
)
ORU = hl7(
    "MSH|^~\\&|LIS|10|MCHENGINE|FY01|20240321113502||ORU^R01|E2E-ORU-1|P|2.4|||AL|NE|CHN|UNICODE UTF-8",
    "PID|1||0010099001^^^HIS^PI||王小红||19940315|F",
    "OBR|1|JC1|24032100001|BLD01^血常规^L|||20240321083000||||||||BLD^全血|||||||20240321113000||HEM|F",
    "OBX|1|NM|HGB^血红蛋白^L||118|g/L|115-150|N|||F|||20240321112000",
    "OBX|2|NM|PLT^血小板计数^L||210|10\\S\\9/L|125-350|N|||F|||20240321112000",
)


@pytest.fixture(params=["embedded", "rabbitmq+postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningEngine]:
    if request.param == "embedded":
        routes = write_routes(tmp_path, database=f"sqlite:///{tmp_path}/engine.db")
        with RunningEngine(routes) as running:
            yield running
        return
    require_service("127.0.0.1", 5672, "RabbitMQ")
    with pg_schema() as url:
        routes = write_routes(tmp_path, database=url, broker=AMQP_URL)
        with RunningEngine(routes) as running:
            yield running
            for dest in running.settings.destinations:
                bus = running.runtime.bus()
                bus.queue_for(dest)(bus._conn.default_channel).delete()
                bus.close()


class TestEndToEnd:
    def test_adt_and_oru_are_acknowledged_and_stored(self, engine: RunningEngine) -> None:
        """An ADT^A04 and an ORU^R01 get AA with their control ids and become a Person and a LabResult."""
        acks = engine.send([ADT_A04, ORU])
        assert [msa(a)[:2] for a in acks] == [("AA", "E2E-ADT-1"), ("AA", "E2E-ORU-1")]

        store = engine.store()
        wait_until(lambda: scalar(store, "select count(*) from records") == 1)
        wait_until(lambda: scalar(store, "select count(*) from persons") == 1)
        # The ADT carries the ID card and the HIS id, the ORU only the HIS id: one person.
        assert scalar(store, "select name from persons") == "王小红"
        person_key = scalar(store, "select person_key from persons")
        payload = scalar(store, "select payload from records where record_id = 'lab:LIS:10:24032100001'")
        payload = payload if isinstance(payload, dict) else __import__("json").loads(payload)
        assert [o["code"] for o in payload["observations"]] == ["HGB", "PLT"]
        assert payload["observations"][1]["unit"] == "10^9/L"
        assert scalar(store, "select person_key from records") == person_key

        journal = engine.journal
        wait_until(
            lambda: scalar(journal, "select count(*) from journal_deliveries where status = 'delivered'") == 2
        )
        assert scalar(journal, "select count(*) from journal_messages where status = 'routed'") == 2

    def test_update_replaces_the_person_and_older_never_wins(self, engine: RunningEngine) -> None:
        """An A08 updates the same person; the older A04 sent afterwards does not overwrite it."""
        assert msa(engine.send([ADT_A08])[0])[0] == "AA"
        store = engine.store()
        wait_until(lambda: scalar(store, "select name from persons") == "王晓红")
        assert msa(engine.send([ADT_A04])[0])[0] == "AA"
        journal = engine.journal
        wait_until(
            lambda: scalar(journal, "select count(*) from journal_deliveries where status = 'delivered'") == 2
        )
        assert scalar(store, "select count(*) from persons") == 1
        assert scalar(store, "select name from persons") == "王晓红"

    def test_gb18030_message_arrives_intact(self, engine: RunningEngine) -> None:
        """A GB18030 ORU with Chinese patient and test names is stored as the original text."""
        raw = (CHINESE / "004_ORU-R01_gb18030__lis-pmtct-hbv-syphilis-hiv-negative.hl7").read_bytes()
        original = raw.decode("gb18030")
        code, control, _ = msa(engine.send([raw])[0], "gb18030")
        assert (code, control) == ("AA", "LIS240321154533000407")
        store = engine.store()
        wait_until(lambda: scalar(store, "select count(*) from records") == 1)
        payload = scalar(store, "select payload from records")
        payload = payload if isinstance(payload, dict) else __import__("json").loads(payload)
        assert payload["person"]["name"] == "陈思雨" and "陈思雨" in original
        names = [o["name"] for o in payload["observations"]]
        assert len(names) == 7
        for name in names:
            assert name in original
        assert "乙肝表面抗原（HBsAg）" in names

    def test_utf8_declared_in_msh18_arrives_intact(self, engine: RunningEngine) -> None:
        """The same kind of message in UTF-8 with MSH-18 = UNICODE UTF-8 is stored as sent."""
        raw = (CHINESE / "003_ORU-R01_utf-8__lis-blood-routine.hl7").read_bytes()
        assert msa(engine.send([raw], channel="lis_gbk")[0])[0] == "AA"  # MSH-18 beats the channel's gb18030
        store = engine.store()
        wait_until(lambda: scalar(store, "select count(*) from records") == 1)
        payload = scalar(store, "select payload from records")
        payload = payload if isinstance(payload, dict) else __import__("json").loads(payload)
        assert payload["person"]["name"] == "陈思雨"
        assert payload["observations"][0]["name"] in raw.decode("utf-8")


class TestStrictChannel:
    def test_strict_channel_keeps_a_structurally_broken_message_as_failed(self, tmp_path: Path) -> None:
        """On a `strict: true` channel a message hl7apy refuses is ACKed, kept, and failed with the reason."""
        channels = {"hospital": {"encoding": "utf-8", "strict": "true"}, "lis_gbk": {"encoding": "gb18030"}}
        routes = write_routes(tmp_path, database=f"sqlite:///{tmp_path}/engine.db", channels=channels)
        broken = ORU.replace(b"||118|", b"|1^2|118|").replace(b"E2E-ORU-1", b"E2E-ORU-2")
        with RunningEngine(routes) as engine:
            good_ack, bad_ack = engine.send([ORU, broken])
            assert msa(good_ack)[0] == msa(bad_ack)[0] == "AA"
            journal = engine.journal
            wait_until(
                lambda: (
                    scalar(journal, "select count(*) from journal_messages where status != 'received'") == 2
                )
            )
            first = scalar(
                journal,
                "select status || ' ' || coalesce(error, '') from journal_messages where control_id = 'E2E-ORU-1'",
            )
            assert first == "routed ", first
            assert (
                scalar(journal, "select status from journal_messages where control_id = 'E2E-ORU-2'")
                == "failed"
            )
            error = scalar(journal, "select error from journal_messages where control_id = 'E2E-ORU-2'")
            assert "strict validation" in error

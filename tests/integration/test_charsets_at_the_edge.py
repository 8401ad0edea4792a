"""Chinese text at the MLLP edge: ACKs echo the sender's bytes, and no mojibake is stored.

Over real MLLP to a running engine with UTF-8, GB18030 and GBK channels: MSH fields are
read in the message's own charset (MSA-2 is MSH-10 byte for byte, MSH-6 the sender's
facility, the journal's sender readable), undeclared UTF-8 on a GB18030 channel is read as
UTF-8, and a declared charset the bytes contradict is refused naming MSH-18.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support import ENGINE_LOG, RunningEngine, msa, scalar, wait_until, write_routes

CHANNELS = {
    "hospital": {"encoding": "utf-8"},
    "lis_gb": {"encoding": "gb18030"},
    "his_gbk": {"encoding": "gbk"},
}

# Realistic names and addresses, with rare characters (生僻字) of 2 and 4 bytes in GB18030.
PEOPLE = [
    ("𠮷晓芸", "重庆市渝北区龙溪街道金山路18号"),
    ("王䶮", "北京市海淀区中关村南大街5号院"),
    ("李喆", "广东省深圳市南山区粤海街道科技园"),
    ("张堃", "四川省成都市武侯区玉林北路3栋2单元"),
    ("欧阳淑芬", "湖南省长沙市岳麓区麓山南路932号"),
]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEngine]:
    tmp = tmp_path_factory.mktemp("charsets")
    routes = write_routes(tmp, database=f"sqlite:///{tmp}/engine.db", channels=CHANNELS)
    with RunningEngine(routes) as running:
        yield running


def adt(control_id: str, *, name: str, address: str = "", charset: str = "", app: str = "HIS") -> str:
    return (
        f"MSH|^~\\&|{app}|妇幼保健院|MCHENGINE|FY01|20240321083215||ADT^A04^ADT_A01|{control_id}|P|2.5"
        f"||||||{charset}\r"
        "EVN|A04|20240321083200\r"
        f"PID|1||{control_id}^^^HIS^PI||{name}||19940315|F|||{address}\r"
    )


def fields(segment: bytes) -> list[bytes]:
    return segment.split(b"|")


def segment_of(ack: bytes, name: bytes) -> bytes:
    return next(s for s in ack.split(b"\r") if s.startswith(name))


def row(engine: RunningEngine, column: str, control_id: str) -> object:
    return scalar(
        engine.journal, f"select {column} from journal_messages where control_id = :c", c=control_id
    )


def stored_name(engine: RunningEngine, control_id: str) -> str:
    store = engine.store()
    return str(
        wait_until(
            lambda: scalar(store, "select name from persons where person_key like :k", k=f"%:{control_id}")
        )
    )


@pytest.mark.parametrize(
    ("channel", "codec"), [("hospital", "utf-8"), ("lis_gb", "gb18030"), ("his_gbk", "gbk")]
)
def test_ack_echoes_chinese_msh_fields_in_the_message_charset(
    engine: RunningEngine, channel: str, codec: str
) -> None:
    """MSA-2 holds MSH-10's exact bytes, MSH-6 the sender's facility; the journal's sender reads."""
    control_id = f"检验单{codec}号001"
    raw = adt(control_id, name="陈思雨", app="检验系统").encode(codec)
    (ack,) = engine.send([raw], channel=channel)
    assert ack is not None
    msa_fields = fields(segment_of(ack, b"MSA"))
    assert msa_fields[1] == b"AA"
    assert msa_fields[2] == control_id.encode(codec)
    ack_msh = fields(segment_of(ack, b"MSH"))
    assert ack_msh[4] == "检验系统".encode(codec)  # MSH-5 = the sender's MSH-3
    assert ack_msh[5] == "妇幼保健院".encode(codec)  # MSH-6 = the sender's MSH-4
    assert row(engine, "sender", control_id) == "检验系统^妇幼保健院"


@pytest.mark.parametrize("codec", ["utf-8", "gb18030"])
@pytest.mark.parametrize(("name", "address"), PEOPLE)
def test_a_gb18030_channel_stores_utf8_and_gb18030_as_written(
    engine: RunningEngine, name: str, address: str, codec: str
) -> None:
    """MSH-18 empty on a GB18030 channel: UTF-8 bytes are read as UTF-8 (journaled so), GB18030 as
    GB18030; either way AA and the name stored intact, rare characters included."""
    control_id = f"{codec}-{PEOPLE.index((name, address))}"
    (ack,) = engine.send([adt(control_id, name=name, address=address).encode(codec)], channel="lis_gb")
    assert msa(ack, codec)[:2] == ("AA", control_id)
    assert row(engine, "encoding", control_id) == codec
    assert stored_name(engine, control_id) == name


def test_undeclared_utf8_on_a_gb18030_channel_is_logged(engine: RunningEngine) -> None:
    """UTF-8 bytes with MSH-18 empty on a GB18030 channel: one `charset_differs_from_channel`
    warning saying the channel and what the message was read as; GB18030 bytes log none."""
    name, address = PEOPLE[0]
    before = ENGINE_LOG.mark()
    (ack,) = engine.send([adt("LOGU8-1", name=name, address=address).encode("utf-8")], channel="lis_gb")
    assert msa(ack)[:2] == ("AA", "LOGU8-1")
    (ack,) = engine.send([adt("LOGGB-1", name=name, address=address).encode("gb18030")], channel="lis_gb")
    assert msa(ack, "gb18030")[:2] == ("AA", "LOGGB-1")
    logged = ENGINE_LOG.events(since=before, name="charset_differs_from_channel")
    assert [(e["control_id"], e["channel"], e["channel_encoding"], e["read_as"]) for e in logged] == [
        ("LOGU8-1", "lis_gb", "gb18030", "utf-8")
    ]
    assert name not in str(logged) and address not in str(logged)


@pytest.mark.parametrize(("name", "address"), PEOPLE)
def test_undeclared_gb18030_on_a_utf8_channel_is_refused_and_kept(
    engine: RunningEngine, name: str, address: str
) -> None:
    """GB18030 bytes with MSH-18 empty on a UTF-8 channel: AR with the offset, raw kept, nothing stored."""
    control_id = f"GBU8-{PEOPLE.index((name, address))}"
    raw = adt(control_id, name=name, address=address).encode("gb18030")
    (ack,) = engine.send([raw], channel="hospital")
    code, echoed, text = msa(ack)
    assert (code, echoed) == ("AR", control_id)
    assert "offset" in text and "GB18030" in text
    assert row(engine, "status", control_id) == "rejected"
    assert bytes(row(engine, "raw", control_id)) == raw  # type: ignore[arg-type]


@pytest.mark.parametrize("declared", ["8859/1", "UNICODE UTF-16", "GB 18030-2000"])
def test_declared_charset_the_utf8_bytes_contradict_is_refused_naming_msh18(
    engine: RunningEngine, declared: str
) -> None:
    """UTF-8 bytes under an MSH-18 that says otherwise: AR, ERR code 102 at MSH-18, raw kept."""
    control_id = f"DECL-{declared.replace(' ', '').replace('/', '')}"
    raw = adt(control_id, name="𠮷晓芸", address=PEOPLE[0][1], charset=declared).encode("utf-8")
    (ack,) = engine.send([raw], channel="hospital")
    assert ack is not None
    code, echoed, text = msa(ack, "latin-1")
    assert (code, echoed) == ("AR", control_id)
    assert declared in text
    err = fields(segment_of(ack, b"ERR"))
    assert err[2] == b"MSH^1^18" and err[3].startswith(b"102^")
    assert row(engine, "status", control_id) == "rejected"
    assert bytes(row(engine, "raw", control_id)) == raw  # type: ignore[arg-type]


@pytest.mark.parametrize("msh2", ["", "^"])
def test_empty_or_single_encoding_character_is_refused(engine: RunningEngine, msh2: str) -> None:
    """`MSH||…` and `MSH|^|…` cannot declare the delimiters: AR naming MSH-2, kept as rejected."""
    control_id = f"MSH2-{len(msh2)}"
    raw = adt(control_id, name="陈思雨").replace("MSH|^~\\&|", f"MSH|{msh2}|", 1).encode("utf-8")
    (ack,) = engine.send([raw], channel="hospital")
    code, _, text = msa(ack)
    assert code == "AR" and "MSH-2" in text
    status = scalar(engine.journal, "select status from journal_messages where raw = :raw", raw=raw)
    assert status == "rejected"

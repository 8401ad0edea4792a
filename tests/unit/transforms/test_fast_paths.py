"""The transform's fast paths give exactly what the plain implementation gave.

The transform stage keeps several shortcuts for speed: a segment reader that splits a
field's components once (`Segment.value`), converters that remember their answers, cut-down
condition tests, rules compiled into fewer steps, cached ID-card checks, a "not in the future"
check that reads the clock only near the limit, and the computed-field validator only on the
models that have computed fields. Each test here holds one shortcut against the answer of
the straightforward code, and `test_transform_outputs_unchanged` holds the whole stage
(route, map, validate) against outputs recorded before the shortcuts existed, over the
shipped samples and messages written to reach the unusual branches.

Regenerate the recorded outputs only for an intended change of output:
`python -m tests.unit.transforms.test_fast_paths`.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import computed_field

from core.journal import Accepted
from core.settings import load_settings
from engine.pipeline import TransformWorker
from engine.runtime import EngineRuntime
from transforms.converters import chinese_name, hl7_date, hl7_datetime, sex
from transforms.decode import choose_encoding, normalise_codec
from transforms.hl7v2 import HL7_NULL, Delimiters, Message, NullValue, Segment, read_msh, unescape
from transforms.mapping.compiler import compile_message_condition
from transforms.records.base import HOSPITAL_TZ, PersonRef, RecordModel, Source
from transforms.records.idcard import id_card_problems

REPO = Path(__file__).resolve().parents[3]
EXPECTED = Path(__file__).with_name("data") / "fast_paths_expected.json"

# --------------------------------------------------------------------------- segment reader


def _reference_get(
    seg_text: str, d: Delimiters, header: bool, n: int, rep: int, comp: int | None, sub: int | None
) -> str | NullValue | None:
    """The reader's rules written out plainly: select, then decode what has no deeper parts."""
    fields = seg_text.split(d.field)
    if header:
        fields.insert(1, d.field)
    raw = fields[n] if 0 <= n < len(fields) else ""
    if not raw:
        return None
    if header and n in (1, 2):
        return raw if rep == 1 and comp in (None, 1) and sub in (None, 1) else None
    reps = raw.split(d.repetition)
    if rep > len(reps):
        return None
    raw = reps[rep - 1]

    def decode(text: str) -> str | NullValue | None:
        if not text:
            return None
        if text == '""':
            return HL7_NULL
        return unescape(text, d)

    if comp is None:
        return raw if (d.component in raw or d.subcomponent in raw) else decode(raw)
    comps = raw.split(d.component)
    if comp > len(comps):
        return None
    raw = comps[comp - 1]
    if sub is None:
        return raw if d.subcomponent in raw else decode(raw)
    subs = raw.split(d.subcomponent)
    if sub > len(subs):
        return None
    return decode(subs[sub - 1])


_TRICKY = (
    "MSH|^~\\&|LIS|10|MCH|FY01|20250310080000||ORU^R01|C1|P|2.4",
    'OBX|1|CE|HGB^血红蛋白^L^718-7^Hemoglobin^LN||""|g/L|110-150|L~H|||F',
    "OBX|2|ST|X&Y^a\\S\\b^L||10\\S\\9/L^^~second&sub^two|\\E\\path\\|||||F|||",
    "PID|1||001^^^HIS^PI~500112199403151525^^^^ID~~^^^^MCH||张三^^^^^^L~ZHANG^SAN^^^^^P",
    "NTE|1||line one\\.br\\line two~second note||",
)


@pytest.mark.parametrize("line", _TRICKY)
def test_segment_value_matches_the_plain_rules(line: str) -> None:
    message = Message(_TRICKY[0] + "\r" + line)
    name = line[:3]
    seg = message.segment(name)
    assert seg is not None
    header = name == "MSH"
    for _ in range(2):  # the second pass reads from the kept component splits
        for n in range(0, 14):
            for rep in (1, 2, 3):
                for comp in (None, 1, 2, 3, 4, 5, 6, 7):
                    for sub in (None, 1, 2, 3) if comp is not None else (None,):
                        want = _reference_get(line, message.delimiters, header, n, rep, comp, sub)
                        assert seg.value(n, rep, comp, sub) == want, (n, rep, comp, sub)
                        assert seg.get(n, rep, comp, sub) == want, (n, rep, comp, sub)


def test_segment_get_still_checks_its_arguments() -> None:
    seg = Segment("OBX|1|NM", Message(_TRICKY[0]).delimiters)
    with pytest.raises(ValueError):
        seg.get(1, 0)
    with pytest.raises(ValueError):
        seg.get(1, 1, None, 1)


# --------------------------------------------------------------------------- converters


@pytest.mark.parametrize("convert", [hl7_datetime, hl7_date, sex, chinese_name])
def test_remembered_converters_answer_as_before(convert: Any) -> None:
    plain = convert.__wrapped__
    for text in ("20250310080000", "20250310", "F", "张三^^^^^^L", "ZHANG^SAN", "2025031008+0100"):
        try:
            want: Any = plain(text)
        except ValueError as exc:
            want = ("error", str(exc))
        for _ in range(2):
            try:
                got: Any = convert(text)
            except ValueError as exc:
                got = ("error", str(exc))
            assert got == want, text


def test_remembered_converter_raises_every_time() -> None:
    for _ in range(3):
        with pytest.raises(ValueError):
            hl7_datetime("not a time")


# --------------------------------------------------------------------------- conditions


@pytest.mark.parametrize(
    ("condition", "message_tail", "expected"),
    [
        ("MSH-3 == LIS", "", True),
        ("MSH-3 != LIS", "", False),
        ("MSH-3 == ''", "", False),
        ("MSH-3 != ''", "", True),
        ("PID-3[*].5 == ID", "\rPID|1||a^^^^PI~b^^^^ID", True),
        ("PID-3[*].5 != ID", "\rPID|1||a^^^^PI~b^^^^ID", False),
        ("PID-3[*].5 != XX", "\rPID|1||a^^^^PI~b^^^^ID", True),
        ("PID-8 == F", '\rPID|1||||||""', False),
        ("PID-8 != F", '\rPID|1||||||""', True),
        ("PID-8", '\rPID|1||||||""', False),
        ("PID-3[*].5", "\rPID|1||a~b", False),
        ("PID-3[*].1", "\rPID|1||a~b", True),
        ("OBX[*]-8 in [HH, LL]", "\rOBX|1|NM|A||1|||N\rOBX|2|NM|B||1|||HH", True),
        ("OBX[*]-8 not in [HH, LL]", "\rOBX|1|NM|A||1|||N\rOBX|2|NM|B||1|||HH", False),
        ("not PV1-2", "", True),
    ],
)
def test_condition_shortcuts(condition: str, message_tail: str, expected: bool) -> None:
    from transforms.mapping.getters import Ctx

    message = Message("MSH|^~\\&|LIS|10|MCH|FY01|20250310080000||ORU^R01|C1|P|2.4" + message_tail)
    assert compile_message_condition(condition)(Ctx(message=message)) is expected


# --------------------------------------------------------------------------- record models


def test_future_check_reads_the_clock_again_near_the_limit() -> None:
    past = datetime(2020, 1, 1, tzinfo=HOSPITAL_TZ)
    soon = datetime.now(HOSPITAL_TZ) + timedelta(hours=23)
    later = datetime.now(HOSPITAL_TZ) + timedelta(days=2)
    for value in (past, soon, past):
        assert Source.model_validate({"event_time": value}).event_time == value
    with pytest.raises(ValueError, match="is in the future"):
        Source.model_validate({"event_time": later})


def test_id_card_problems_are_kept_per_number_and_fresh_per_call() -> None:
    ref = PersonRef.model_validate({"id_card": "500112199403151526", "birth_date": "1994-03-16", "sex": "1"})
    first = ref.id_card_problems()
    assert first == id_card_problems("500112199403151526", ref.birth_date, "1")
    first.clear()  # a caller changing its list does not change the next answer
    assert ref.id_card_problems() == id_card_problems("500112199403151526", ref.birth_date, "1")
    assert not ref.id_card_valid


def test_stored_records_validate_again_with_their_computed_fields() -> None:
    ref = PersonRef.model_validate({"id_card": "500112199403151525", "name": "陈思雨"})
    again = PersonRef.model_validate(ref.model_dump(mode="json"))
    assert again == ref and again.id_card_valid


def test_a_model_with_computed_fields_must_drop_them_on_input() -> None:
    with pytest.raises(TypeError, match="drop_computed"):

        class Broken(RecordModel):
            value: int = 1

            @computed_field  # type: ignore[prop-decorator]
            @property
            def double(self) -> int:
                return self.value * 2

        del Broken


# --------------------------------------------------------------------------- whole stage

# Messages that reach the branches the shipped samples rarely do: escapes and repetitions
# in OBX-5, coded and dated values, LOINC alternates, HL7 nulls, critical flags, notes,
# several OBR groups, lowercase ID-card check characters, legacy numbers and odd units.
_SYNTHETIC = (
    "MSH|^~\\&|LIS|10|MCHENGINE|FY01|20250310080000||ORU^R01|S1|P|2.4|||AL|NE|CHN|UNICODE UTF-8\r"
    "PID|1||0010000001^^^HIS^PI~50011219921210000x^^^^ID||王小雨^^^^^^L~WANG^XIAOYU||19921210|F\r"
    "PV1|1|O|产科门诊^^^FY01||||D1001^王医生||||||||||||MZ1\r"
    "OBR|1|JC1|F1|BLD01^血常规^L|||20250310060000|||||||20250310060000|BLD^全血|D1001^王医生||||||"
    "20250310080000||HEM|F|||||||D1023&张敏\r"
    "OBX|1|NM|HGB^血红蛋白^L^718-7^Hemoglobin^LN||<0.05|g/L|110-150|LL|||F|||20250310080000\r"
    "NTE|1||复查\\.br\\请空腹\r"
    "OBX|2|CE|HBSAG^乙肝表面抗原^L||NEG^阴性^HL70078~POS^阳性|||N|||C\r"
    "OBX|3|ST|NOTE^备注^L||a\\S\\b\\T\\c\\F\\d||||||F\r"
    "OBX|4|NM|PLT^血小板计数^L||226|10\\S\\9/L|125-350|↑|||F|||20250310080000+0000\r"
    'OBX|5|NM|WBC^白细胞计数^L||""|||||F\r'
    "OBX|6|DT|EDD^预产期^L||20250901||||||F\r"
    "OBX|7|NM|ZZZ^未知项目^99X||abc|furlongs|<5.1|Q|||F\r"
    "OBR|2|JC2|F2|BIO01^孕期生化^L\r"
    "OBX|1|NM|GLU0^空腹血糖^L||5.3|mmol/L|3.9-5.1|H|||F\r",
    "MSH|^~\\&|HIS|FY01|MCHENGINE|FY01|20250310080000||ADT^A08^ADT_A01|S2|P|2.5|||AL|NE|CHN\r"
    "EVN|A08|20250310075900\r"
    "PID|1||0010000002^^^HIS^PI~500112850315152^^^^ID~MCH0001^^^^MCH||李四^^^^^^L~LI^SI||19850315|F|||"
    "龙溪街道1号^^重庆市^重庆市^401147^CHN^H^^500112||^PRN^CP^^^^^^^^^13900001234~^NET^Internet^a@b.cn"
    "|||M^已婚||||||01^汉族^GB3304||||||CHN^中国\r"
    "PV1|1|I|产科病房^^^FY01||||D1045^李红||||||||||||ZY1\r",
    "MSH|^~\\&|HIS|FY01|MCHENGINE|FY01|20250310080000||ADT^A04^ADT_A01|S3|P|2.5\r"
    'PID|1||0010000003^^^HIS^PI||""||201503101230|M||||||||||||||||||||||||\r',
    "MSH|^~\\&|HIS|FY01|MCHENGINE|FY01|20250310080000||ADT^A01|S4|P|2.5\r"
    "EVN|A01|20250310080000\r"
    "PID|1||||无名\r",
    "MSH|^~\\&|LIS|10|MCHENGINE|FY01|20991231235959||ORU^R01|S5|P|2.4\r"
    "PID|1||0010000005^^^HIS^PI\r"
    "OBR|1||F5|BLD01^血常规^L||||||||||||||||||||F\r"
    "OBX|1|NM|HGB^血红蛋白^L||120|g/L||||F|||20991231235959\r",
    "MSH|^~\\&|PACS|10|MCHENGINE|FY01|20250310080000||ORU^R01|S6|P|2.4\r"
    "PID|1||0010000006^^^HIS^PI\r"
    "OBR|1||F6|US01^超声^L\r",
)


def _inputs() -> list[tuple[str, str, bytes, str]]:
    """(name, channel, raw bytes, encoding) for every recorded case."""
    files = sorted(REPO.glob("mappings/*/samples/*.hl7")) + sorted(REPO.glob("samples/*.hl7"))
    cases = []
    for path in files:
        raw = path.read_bytes()
        try:
            charset = read_msh(raw).charset
        except ValueError:
            charset = ""
        for channel, default in (("hospital", "utf-8"), ("lis_gbk", "gb18030")):
            encoding = normalise_codec(choose_encoding(charset, default))
            cases.append((f"{path.relative_to(REPO)}@{channel}", channel, raw, encoding))
    for i, text in enumerate(_SYNTHETIC):
        cases.append((f"synthetic-{i}", "hospital", text.encode("utf-8"), "utf-8"))
    return cases


def _outputs() -> dict[str, Any]:
    settings = load_settings(REPO / "routes.yaml", env={})
    worker = TransformWorker(EngineRuntime(settings).router(), None, lambda: None)  # type: ignore[arg-type, return-value]
    out: dict[str, Any] = {}
    for i, (name, channel, raw, encoding) in enumerate(_inputs(), start=1):
        outcome, envelopes = worker.transform(Accepted(i, channel, raw, encoding))
        out[name] = {"status": outcome.status, "error": outcome.error, "envelopes": envelopes}
    return json.loads(json.dumps(out, ensure_ascii=False))  # as the bus would carry them


def test_transform_outputs_unchanged() -> None:
    expected = json.loads(EXPECTED.read_text(encoding="utf-8"))
    got = _outputs()
    assert sorted(got) == sorted(expected)
    for name in expected:
        assert got[name] == expected[name], name


if __name__ == "__main__":
    EXPECTED.parent.mkdir(exist_ok=True)
    cases = sorted(_outputs().items())
    lines = [f"{json.dumps(k, ensure_ascii=False)}: {json.dumps(v, ensure_ascii=False)}" for k, v in cases]
    EXPECTED.write_text("{\n" + ",\n".join(lines) + "\n}\n", encoding="utf-8")  # one case a line
    print(f"wrote {EXPECTED.relative_to(REPO)}")

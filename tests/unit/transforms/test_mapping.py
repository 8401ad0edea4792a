"""Unit tests for the declarative mapping language (transforms.mapping)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import support
from core.errors import ConfigError, ConfigErrors, MappingError
from transforms.hl7v2 import Message
from transforms.mapping import MappedRecord, Mapping, load_mapping

REPO = Path(__file__).resolve().parents[3]

MSG = "\r".join(
    [
        "MSH|^~\\&|HIS|FY01|MCHENGINE|FY01|20240321083215||ADT^A04^ADT_A01|C123|P|2.5"
        "|||AL|NE|CHN|UNICODE UTF-8",
        "EVN|A04|20240321083200",
        "PID|1||0010023456^^^HIS^PI~500112199403151525^^^^ID~FY2024000123^^^A&FY01^MCH"
        '||陈思雨~CHEN^SIYU||19940315|F|||金龙路18号^^重庆市^重庆市^401147|||||||||||""',
        "OBX|1|NM|HGB^血红蛋白^L||118|g/L|115-150|N|||F|||20240321112000",
        "OBX|2|NM|PLT^血小板计数^L||215|10\\S\\9/L|125-350|N|||F",
        "OBX|3|ST|NOTE^备注^L||||||||F",
    ]
)


def yaml_text(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def line_of(text: str, needle: str) -> int:
    """1-based line of the first line of `text` containing `needle`."""
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in the YAML")


def write(tmp_path: Path, text: str, name: str = "m.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml_text(text), encoding="utf-8")
    return path


def fields_mapping(fields: str) -> str:
    """A one-record mapping whose `fields:` block is `fields` (indented by the caller's YAML)."""
    body = textwrap.indent(textwrap.dedent(fields).strip("\n"), " " * 6)
    return 'records:\n  - type: T\n    record_id: "t:{MSH-10}"\n    fields:\n' + body + "\n"


def apply_fields(tmp_path: Path, fields: str, message: str = MSG) -> dict:
    path = tmp_path / "m.yaml"
    path.write_text(fields_mapping(fields), encoding="utf-8")
    (record,) = load_mapping(path).apply(Message(message))
    return record.record


def config_errors(tmp_path: Path, text: str) -> tuple[list[str], str]:
    """The problems loading `text` reports (as lines) and the written YAML."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigErrors) as caught:
        load_mapping(path)
    assert all(isinstance(e, ConfigError) for e in caught.value.errors)
    return [str(e) for e in caught.value.errors], path.read_text(encoding="utf-8")


class TestRecords:
    def test_record_type_id_key_and_default_event_time(self, tmp_path: Path) -> None:
        """A record gets its type, record_id and MSH-7 as event time by default."""
        path = write(
            tmp_path,
            """
            mapping: t
            description: test
            records:
              - type: Person
                record_id: "person:{PID-3[1].4}:{PID-3[1].1}"
                fields:
                  name: PID-5[1].1
            """,
        )
        mapping = load_mapping(path)
        assert isinstance(mapping, Mapping)
        assert mapping.apply(Message(MSG)) == [
            MappedRecord(
                record_type="Person",
                record_id="person:HIS:0010023456",
                event_time="2024-03-21T08:32:15+08:00",
                record={"name": "陈思雨"},
            )
        ]

    def test_event_time_rule(self, tmp_path: Path) -> None:
        """event_time can name its own rule, e.g. EVN-2 before MSH-7."""
        path = write(
            tmp_path,
            """
            records:
              - type: T
                record_id: "{MSH-10}"
                event_time: {first: [EVN-2, MSH-7], convert: hl7_datetime}
                fields: {}
            """,
        )
        (record,) = load_mapping(path).apply(Message(MSG))
        assert record.event_time == "2024-03-21T08:32:00+08:00"

    def test_several_records_from_one_message(self, tmp_path: Path) -> None:
        """Each entry of `records:` gives one record, in order."""
        path = write(
            tmp_path,
            """
            records:
              - type: A
                record_id: "a:{MSH-10}"
                fields: {}
              - type: B
                record_id: "b:{MSH-10}"
                fields: {}
            """,
        )
        records = load_mapping(path).apply(Message(MSG))
        assert [(r.record_type, r.record_id) for r in records] == [("A", "a:C123"), ("B", "b:C123")]

    def test_missing_record_id_raises_mapping_error(self, tmp_path: Path) -> None:
        """A message that gives no record_id raises MappingError naming the file and record line."""
        text = """
            records:
              - type: T
                record_id: "t:{PID-19}"
                fields: {}
            """
        path = write(tmp_path, text)
        with pytest.raises(MappingError) as caught:
            load_mapping(path).apply(Message(MSG))
        assert f"{path}:{line_of(yaml_text(text), '- type: T')}" in str(caught.value)
        assert "record_id" in str(caught.value)


class TestFieldRules:
    def test_plain_paths(self, tmp_path: Path) -> None:
        """A bare path gives the first decoded value; absent and HL7-null values give None."""
        got = apply_fields(
            tmp_path,
            """
            name: PID-5[1].1
            pinyin_family: PID-5[2].1
            birth: PID-7
            city: PID-11.3
            unit: OBX[2]-6
            absent: PID-30
            hl7_null: PID-24
            """,
        )
        assert got == {
            "name": "陈思雨",
            "pinyin_family": "CHEN",
            "birth": "19940315",
            "city": "重庆市",
            "unit": "10^9/L",
            "absent": None,
            "hl7_null": None,
        }

    def test_star_path_gives_a_list(self, tmp_path: Path) -> None:
        """A path with [*] gives every value it selects."""
        got = apply_fields(tmp_path, "ids: PID-3[*].1\nvalues: OBX[*]-5")
        assert got == {
            "ids": ["0010023456", "500112199403151525", "FY2024000123"],
            "values": ["118", "215", None],
        }

    def test_templates_with_braces(self, tmp_path: Path) -> None:
        """Text with {paths} is filled in; a template with an empty part gives None."""
        got = apply_fields(
            tmp_path,
            """
            system: "{MSH-3}^{MSH-4}"
            key: {template: "person:{PID-3[1].4}:{PID-3[1].1}"}
            pinyin: "{PID-5[2].1} {PID-5[2].2}"
            holey: "lab:{MSH-4}:{OBR-3.1}"
            """,
        )
        assert got == {
            "system": "HIS^FY01",
            "key": "person:HIS:0010023456",
            "pinyin": "CHEN SIYU",
            "holey": None,
        }

    def test_first_takes_the_first_path_with_a_value(self, tmp_path: Path) -> None:
        """`first:` tries its paths in order and returns the first non-empty one."""
        got = apply_fields(
            tmp_path,
            """
            id_card:
              first:
                - PID-19
                - PID-3[*].1 where PID-3[*].5 == ID
            nothing: {first: [PID-19, PID-30]}
            single: {first: "PID-5[1].1"}
            """,
        )
        assert got == {"id_card": "500112199403151525", "nothing": None, "single": "陈思雨"}

    def test_where_selects_the_repetition(self, tmp_path: Path) -> None:
        """`A where B == X` gives A of the first repetition whose B is X; `!=` and quotes work."""
        got = apply_fields(
            tmp_path,
            """
            id_card: PID-3[*].1 where PID-3[*].5 == ID
            his_id: PID-3[*].1 where PID-3[*].5 == 'PI'
            authority: PID-3[*].4 where PID-3[*].5 == "PI"
            not_pi: PID-3[*].1 where PID-3[*].5 != PI
            missing: PID-3[*].1 where PID-3[*].5 == NONE
            """,
        )
        assert got == {
            "id_card": "500112199403151525",
            "his_id": "0010023456",
            "authority": "HIS",
            "not_pi": "500112199403151525",
            "missing": None,
        }

    def test_const_and_default(self, tmp_path: Path) -> None:
        """`const:` gives its value; `default:` replaces an empty value only."""
        got = apply_fields(
            tmp_path,
            """
            source: {const: 妇幼}
            number: {const: 42}
            nationality: {path: PID-28, default: CHN}
            name: {path: "PID-5[1].1", default: 无名}
            """,
        )
        assert got == {"source": "妇幼", "number": 42, "nationality": "CHN", "name": "陈思雨"}

    def test_converters_apply(self, tmp_path: Path) -> None:
        """`convert:` runs the named converter on the value."""
        got = apply_fields(
            tmp_path,
            """
            sex: {path: PID-8, convert: sex}
            birth_date: {path: PID-7, convert: hl7_date}
            at: {path: MSH-7, convert: hl7_datetime}
            hgb: {path: "OBX[1]-5", convert: number}
            empty: {path: PID-30, convert: hl7_date}
            """,
        )
        assert got == {
            "sex": "2",
            "birth_date": "1994-03-15",
            "at": "2024-03-21T08:32:15+08:00",
            "hgb": 118,
            "empty": None,
        }

    def test_nested_fields(self, tmp_path: Path) -> None:
        """`fields:` inside a field builds a nested object."""
        got = apply_fields(
            tmp_path,
            """
            address:
              fields:
                street: PID-11[1].1
                city: PID-11[1].3
                geo:
                  fields:
                    postal_code: PID-11[1].5
                    country: {const: CHN}
            """,
        )
        assert got == {
            "address": {
                "street": "金龙路18号",
                "city": "重庆市",
                "geo": {"postal_code": "401147", "country": "CHN"},
            }
        }

    def test_each_segment_reads_the_current_one(self, tmp_path: Path) -> None:
        """`each: OBX` gives one object per OBX, its OBX paths reading that OBX."""
        got = apply_fields(
            tmp_path,
            """
            observations:
              each: OBX
              fields:
                set_id: OBX-1
                code: OBX-3.1
                name: OBX-3.2
                value: {path: OBX-5, convert: number}
                unit: OBX-6
                at: {path: OBX-14, convert: hl7_datetime}
                msg: MSH-10
            """,
        )
        assert got["observations"] == [
            {
                "set_id": "1",
                "code": "HGB",
                "name": "血红蛋白",
                "value": 118,
                "unit": "g/L",
                "at": "2024-03-21T11:20:00+08:00",
                "msg": "C123",
            },
            {
                "set_id": "2",
                "code": "PLT",
                "name": "血小板计数",
                "value": 215,
                "unit": "10^9/L",
                "at": None,
                "msg": "C123",
            },
            {
                "set_id": "3",
                "code": "NOTE",
                "name": "备注",
                "value": None,
                "unit": None,
                "at": None,
                "msg": "C123",
            },
        ]

    def test_each_of_absent_segment_is_empty_list(self, tmp_path: Path) -> None:
        """`each:` over a segment the message lacks gives an empty list."""
        got = apply_fields(tmp_path, "orders:\n  each: OBR\n  fields:\n    id: OBR-3.1")
        assert got == {"orders": []}

    def test_each_repetition_with_relative_paths(self, tmp_path: Path) -> None:
        """`each: PID-3[*]` gives one object per repetition; '.N' and '.N.M' read its parts."""
        got = apply_fields(
            tmp_path,
            """
            identifiers:
              each: PID-3[*]
              fields:
                id: '.1'
                authority: '.4'
                authority_sub: '.4.2'
                type: '.5'
                beyond: '.9'
            """,
        )
        assert got["identifiers"] == [
            {
                "id": "0010023456",
                "authority": "HIS",
                "authority_sub": None,
                "type": "PI",
                "beyond": None,
            },
            {
                "id": "500112199403151525",
                "authority": None,
                "authority_sub": None,
                "type": "ID",
                "beyond": None,
            },
            {
                "id": "FY2024000123",
                "authority": "A&FY01",
                "authority_sub": "FY01",
                "type": "MCH",
                "beyond": None,
            },
        ]

    def test_relative_paths_are_unescaped(self, tmp_path: Path) -> None:
        """A relative path's value has its HL7 escapes decoded."""
        message = MSG.replace("0010023456^^^HIS^PI", "00\\F\\1^^^HIS^PI", 1)
        got = apply_fields(tmp_path, "ids:\n  each: PID-3[*]\n  fields:\n    id: '.1'", message)
        assert got["ids"][0] == {"id": "00|1"}


class TestMappingErrors:
    def test_required_empty_value_names_file_line_path_value_and_rule(self, tmp_path: Path) -> None:
        """A required rule with no value raises MappingError naming file:line, path, value, rule."""
        path = tmp_path / "m.yaml"
        text = fields_mapping(
            """
            name: PID-5[1].1
            id_card:
              path: PID-19
              required: true
            """
        )
        path.write_text(text, encoding="utf-8")
        with pytest.raises(MappingError) as caught:
            load_mapping(path).apply(Message(MSG))
        err = caught.value
        message = str(err)
        assert f"{path}:{line_of(text, 'id_card:')}" in message
        assert "PID-19" in message
        assert "None" in message
        assert "required" in message
        assert (err.mapping, err.line, err.path, err.value) == (
            str(path),
            line_of(text, "id_card:"),
            "PID-19",
            None,
        )

    def test_required_with_value_passes(self, tmp_path: Path) -> None:
        """A required rule that finds a value just returns it."""
        got = apply_fields(tmp_path, "name: {path: 'PID-5[1].1', required: true}")
        assert got == {"name": "陈思雨"}

    def test_converter_failure_names_the_line_value_and_converter(self, tmp_path: Path) -> None:
        """hl7_date on 2024-13-45 raises MappingError with the line, path, value and converter."""
        path = tmp_path / "m.yaml"
        text = fields_mapping(
            """
            name: PID-5[1].1
            birth_date: {path: PID-7, convert: hl7_date}
            """
        )
        path.write_text(text, encoding="utf-8")
        message = MSG.replace("|19940315|", "|20241345|")
        with pytest.raises(MappingError) as caught:
            load_mapping(path).apply(Message(message))
        text_of_error = str(caught.value)
        assert f"{path}:{line_of(text, 'birth_date')}" in text_of_error
        assert "PID-7" in text_of_error
        assert "20241345" in text_of_error
        assert "hl7_date" in text_of_error

    def test_display_name_is_used_in_errors(self, tmp_path: Path) -> None:
        """load_mapping(display=...) names the file as configured, not by its absolute path."""
        path = tmp_path / "m.yaml"
        path.write_text(fields_mapping("x: {path: PID-19, required: true}"), encoding="utf-8")
        with pytest.raises(MappingError) as caught:
            load_mapping(path, display="mappings/his/x.yaml").apply(Message(MSG))
        assert str(caught.value).startswith("mappings/his/x.yaml:")


class TestCompileErrors:
    def test_unknown_converter(self, tmp_path: Path) -> None:
        """An unknown converter is reported at its line, listing the known ones."""
        problems, text = config_errors(tmp_path, fields_mapping("sex: {path: PID-8, convert: gender}"))
        (problem,) = problems
        assert problem.startswith(f"{tmp_path / 'm.yaml'}:{line_of(text, 'gender')}:")
        assert "gender" in problem and "sex" in problem

    def test_unknown_key_in_field_rule(self, tmp_path: Path) -> None:
        """A misspelt key in a field rule is reported at its line."""
        text = fields_mapping(
            """
            name:
              path: PID-5[1].1
              requried: true
            """
        )
        (problem,) = config_errors(tmp_path, text)[0]
        assert problem.startswith(f"{tmp_path / 'm.yaml'}:{line_of(text, 'requried')}:")
        assert "requried" in problem

    def test_unknown_key_in_record_and_file(self, tmp_path: Path) -> None:
        """Unknown keys at the file and record level are reported at their lines."""
        text = """
            mapping: t
            versoin: 2
            records:
              - type: T
                record_id: "{MSH-10}"
                feilds: {}
                fields: {}
            """
        problems, written = config_errors(tmp_path, text)
        file = str(tmp_path / "m.yaml")
        assert any(
            p.startswith(f"{file}:{line_of(written, 'versoin')}:") and "versoin" in p for p in problems
        )
        assert any(p.startswith(f"{file}:{line_of(written, 'feilds')}:") and "feilds" in p for p in problems)

    @pytest.mark.parametrize(
        "rule",
        ["PID-", "PID5", "pid-5", "PID-0", "PID-5[x]", "PID-5.1.2.3", "{template: 'a{PID}b'}"],
    )
    def test_bad_path(self, tmp_path: Path, rule: str) -> None:
        """A path that cannot be compiled is reported at its line."""
        text = fields_mapping(f"ok: PID-5[1].1\nbad: {rule}")
        problems, _ = config_errors(tmp_path, text)
        assert len(problems) == 1
        assert problems[0].startswith(f"{tmp_path / 'm.yaml'}:{line_of(text, 'bad:')}:")
        assert "path" in problems[0]

    def test_bad_where_clause(self, tmp_path: Path) -> None:
        """A where clause whose value and condition are on different fields is reported."""
        text = fields_mapping("x: PID-3[*].1 where PID-5[*].1 == ID")
        (problem,) = config_errors(tmp_path, text)[0]
        assert problem.startswith(f"{tmp_path / 'm.yaml'}:{line_of(text, 'x:')}:")

    def test_unquoted_relative_path_is_a_number(self, tmp_path: Path) -> None:
        """An unquoted `.1` (a YAML float) is reported at its line with a hint to quote it."""
        text = fields_mapping(
            """
            identifiers:
              each: PID-3[*]
              fields:
                id: .1
                type: '.5'
            """
        )
        (problem,) = config_errors(tmp_path, text)[0]
        assert problem.startswith(f"{tmp_path / 'm.yaml'}:{line_of(text, 'id: .1')}:")
        assert "quote" in problem

    def test_all_problems_are_reported_at_once(self, tmp_path: Path) -> None:
        """Several problems in one file are all listed, each with its own line."""
        text = fields_mapping(
            """
            a: {path: PID-5, convert: nosuch}
            b: {path: PID-5, bogus: 1}
            c: PID-
            d: 0.1
            """
        )
        problems, _ = config_errors(tmp_path, text)
        file = str(tmp_path / "m.yaml")
        lines = sorted(int(p[len(file) + 1 :].split(":", 1)[0]) for p in problems)
        assert lines == [line_of(text, f" {k}: ") for k in "abcd"]

    def test_file_without_records(self, tmp_path: Path) -> None:
        """A file without a records list is reported."""
        problems, _ = config_errors(tmp_path, "mapping: t\n")
        assert "records" in problems[0]

    def test_rule_without_a_source(self, tmp_path: Path) -> None:
        """A field rule with none of path/first/template/const/fields/each is reported."""
        (problem,) = config_errors(tmp_path, fields_mapping("x: {convert: sex}"))[0]
        assert "needs one of" in problem

    def test_missing_file(self, tmp_path: Path) -> None:
        """A mapping file that does not exist is reported by name."""
        with pytest.raises(ConfigErrors) as caught:
            load_mapping(tmp_path / "nope.yaml")
        assert "nope.yaml" in str(caught.value)


def _sample(prefix: str) -> str:
    """Text of the synthetic Chinese conformance sample whose name starts with `prefix`."""
    assert support.CHINESE.is_dir(), (
        f"conformance samples not found at {support.CHINESE} (set MCH_CONFORMANCE_DIR)"
    )
    (path,) = support.CHINESE.glob(f"{prefix}_*.hl7")
    byte_encoding = path.name.split("__")[0].split("_")[-1]
    return path.read_bytes().decode("utf-8" if byte_encoding == "utf-8" else "gb18030")


@pytest.fixture(scope="module")
def person() -> Mapping:
    return load_mapping(REPO / "mappings" / "his" / "adt_person.yaml")


@pytest.fixture(scope="module")
def lab() -> Mapping:
    return load_mapping(REPO / "mappings" / "lis" / "oru_r01.yaml")


class TestShippedMappings:
    def test_001_mother_registration_gives_person(self, person: Mapping) -> None:
        """Sample 001 (ADT^A04, UTF-8) maps to Person 陈思雨 with ID card, sex 2 and birth date."""
        (record,) = person.apply(Message(_sample("001")))
        assert record.record_type == "Person"
        assert record.record_id == "person:HIS:0010023456"
        who = record.record["person"]
        assert (who["his_id"], who["his_system"]) == ("0010023456", "HIS")
        assert who["name"] == "陈思雨"
        assert who["id_card"] == "500112199403151525"
        assert who["sex"] == "2"
        assert who["birth_date"] == "1994-03-15"
        assert {"value": "500112199403151525", "authority": None, "type": "ID"} in record.record[
            "identifiers"
        ]

    def test_003_blood_routine_gives_lab_result_with_10_observations(self, lab: Mapping) -> None:
        """Sample 003 (LIS ORU^R01) maps to a LabResult with ten observations."""
        (record,) = lab.apply(Message(_sample("003")))
        assert record.record_type == "LabResult"
        fields = record.record
        assert fields["person"]["name"] == "陈思雨"
        assert fields["person"]["id_card"] == "500112199403151525"
        assert (fields["person"]["his_id"], fields["person"]["his_system"]) == ("0010023456", "HIS")
        assert len(fields["observations"]) == 10
        hgb = next(o for o in fields["observations"] if o["code"] == "HGB")
        assert (hgb["value"], hgb["unit"], hgb["abnormal_flag"]) == (118, "g/L", "N")

    def test_016_four_byte_name_is_kept_exactly(self, person: Mapping) -> None:
        """Sample 016 (GB18030) keeps the name 𠮷晓芸, its 4-byte first character included."""
        (record,) = person.apply(Message(_sample("016")))
        assert record.record["person"]["name"] == "𠮷晓芸"
        assert record.record["person"]["name"][0] == "\U00020bb7"
        assert record.record["person"]["id_card"] == "500230199011020647"

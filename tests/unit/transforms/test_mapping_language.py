"""The mapping language's newer rules: conditions, groups, code tables, quantities, derived values, rows."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from core.errors import ConfigError, ConfigErrors, MappingError
from transforms.hl7v2 import Message
from transforms.mapping import Ctx, load_mapping
from transforms.mapping.codetables import load_code_table
from transforms.mapping.compiler import compile_message_condition
from transforms.mapping.conditions import ConditionError

ORU = "\r".join(
    [
        "MSH|^~\\&|LIS|10|MCHENGINE|FY01|20240321113502||ORU^R01|C1|P|2.4",
        "PID|1||0010023456^^^HIS^PI~500112199403151525^^^^ID||陈思雨||19940315|F",
        "OBR|1|JC1|A1|BLD01^血常规^L|||20240321083000",
        "OBX|1|NM|HGB^血红蛋白^L||11.8|g/dL|11.5-15.0|N|||F",
        "NTE|1||复查",
        "OBX|2|CE|ABO^血型^L||A^A型^L||||||F",
        "OBR|2|JC2|A2|LIV^肝功能^L|||20240321083000",
        "OBX|1|NM|ALT^丙氨酸氨基转移酶^L||25|U/L|7-40|N|||F",
        "OBX|2|CE|RISK^风险^L||Y^黄色^R~P^紫色^R||||||F",
    ]
)


def mapping(tmp_path: Path, body: str, name: str = "m.yaml") -> Any:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return load_mapping(path)


def fields(tmp_path: Path, body: str) -> dict[str, Any]:
    text = "records:\n  - type: T\n    record_id: '{MSH-10}'\n    fields:\n" + textwrap.indent(
        textwrap.dedent(body), "      "
    )
    (record,) = mapping(tmp_path, text).apply(Message(ORU))
    return record.record


class TestConditions:
    @pytest.mark.parametrize(
        ("condition", "expected"),
        [
            ("MSH-3 == LIS", True),
            ("MSH-3 != LIS", False),
            ("MSH-3 in [HIS, LIS]", True),
            ("MSH-3 not in [HIS, PACS]", True),
            ("PID-3[*].5 == ID", True),
            ("PID-3[*].5 != ID", False),
            ("OBR-4.1 startswith BLD and not MSH-4 == 20", True),
            ("(MSH-3 == HIS or MSH-3 == LIS) and PID-8 == F", True),
            ("PV1-2", False),
            ("'MSH-3' == LIS", False),
        ],
    )
    def test_condition_on_a_message(self, condition: str, expected: bool) -> None:
        """Each operator means what docs/mapping.md says."""
        if condition.startswith("'"):
            with pytest.raises(ConditionError):
                compile_message_condition(condition)
            return
        assert compile_message_condition(condition)(Ctx(message=Message(ORU))) is expected

    def test_a_bad_condition_is_a_compile_error_with_its_line(self, tmp_path: Path) -> None:
        """A condition that cannot be read fails at load time, naming file and line."""
        body = "records:\n  - type: T\n    record_id: x\n    when: MSH-3 ==\n    fields: {}\n"
        with pytest.raises(ConfigErrors) as caught:
            mapping(tmp_path, body)
        assert "m.yaml:4" in str(caught.value) and "bad condition" in str(caught.value)

    def test_record_when_skips_records(self, tmp_path: Path) -> None:
        """A record whose `when:` is false is not produced."""
        body = """
        records:
          - {type: A, record_id: {const: a}, when: MSH-3 == LIS, fields: {}}
          - {type: B, record_id: {const: b}, when: MSH-3 == HIS, fields: {}}
        """
        assert [r.record_type for r in mapping(tmp_path, body).apply(Message(ORU))] == ["A"]


class TestGroups:
    def test_each_obr_sees_its_own_obx_and_obx_its_own_nte(self, tmp_path: Path) -> None:
        """`each: OBR` then `each: OBX`: results stay with their order, comments with their result."""
        got = fields(
            tmp_path,
            """
            orders:
              each: OBR
              fields:
                name: OBR-4.2
                results:
                  each: OBX
                  fields: {code: OBX-3.1, comment: NTE-3, order: OBR-3.1, patient: PID-5}
            """,
        )
        first, second = got["orders"]
        assert [r["code"] for r in first["results"]] == ["HGB", "ABO"]
        assert [r["code"] for r in second["results"]] == ["ALT", "RISK"]
        assert first["results"][0]["comment"] == "复查"
        assert first["results"][1]["comment"] is None  # not the HGB's comment
        assert {r["order"] for r in second["results"]} == {"A2"}
        assert first["results"][0]["patient"] == "陈思雨"

    def test_take_first_gives_the_first_matching_group_not_a_list(self, tmp_path: Path) -> None:
        """`take: first` on `each:` gives one value (or object) from the first group that matches,
        whatever its place, and nothing when none does."""
        got = fields(
            tmp_path,
            """
            second_order_alt: {each: OBX, where: "OBX-3.1 == ALT", take: first, value: OBX-5}
            first_nm: {each: OBX, where: "OBX-2 == NM", take: first, fields: {code: OBX-3.1, order: OBR-3.1}}
            none: {each: OBX, where: "OBX-3.1 == TSH", take: first, value: OBX-5}
            """,
        )
        assert got == {"second_order_alt": "25", "first_nm": {"code": "HGB", "order": "A1"}, "none": None}

    def test_take_without_each_or_other_than_first_fails_at_load(self, tmp_path: Path) -> None:
        """`take:` only means something on `each:`, and only `first` exists."""
        with pytest.raises(ConfigErrors, match=r"m\.yaml:5: 'take' goes with 'each' and can only be 'first'"):
            fields(tmp_path, "a: {path: OBX-5, take: first}\n")
        with pytest.raises(ConfigErrors, match="can only be 'first'"):
            fields(tmp_path, "a: {each: OBX, value: OBX-5, take: last}\n")

    def test_records_per_group(self, tmp_path: Path) -> None:
        """`each: OBR` on a record gives one record per order."""
        body = "records:\n  - {type: R, each: OBR, record_id: '{OBR-3}', fields: {n: {each: OBX, value: OBX-3.1}}}\n"
        records = mapping(tmp_path, body).apply(Message(ORU))
        assert [(r.record_id, r.record["n"]) for r in records] == [
            ("A1", ["HGB", "ABO"]),
            ("A2", ["ALT", "RISK"]),
        ]

    def test_each_where_value_join(self, tmp_path: Path) -> None:
        """`where:` filters the items, `value:` takes one value each, `join:` makes one text."""
        got = fields(tmp_path, "codes: {each: OBX, where: 'OBX-2 == NM', value: OBX-3.1, join: ','}\n")
        assert got == {"codes": "HGB,ALT"}


class TestValues:
    def test_obx_sugar_and_typed_values(self, tmp_path: Path) -> None:
        """`obx:` finds an observation by code and types it by OBX-2; repeats give a list."""
        got = fields(
            tmp_path,
            """
            hgb: {obx: HGB}
            hgb_unit: {obx: HGB, obx_field: 6}
            abo: {obx: ABO}
            risk: {obx: RISK}
            missing: {obx: NOPE}
            """,
        )
        assert got["hgb"] == 11.8 and got["hgb_unit"] == "g/dL"
        assert got["abo"] == {"code": "A", "display": "A型", "system": "L"}
        assert [r["code"] for r in got["risk"]] == ["Y", "P"]
        assert got["missing"] is None

    def test_quantity_converted_to_the_wanted_unit(self, tmp_path: Path) -> None:
        """g/dL → g/L by factor; an unknown conversion is a MappingError naming both units."""
        got = fields(tmp_path, "hb: {quantity: {value: 'OBX[1]-5', unit: 'OBX[1]-6'}, to_unit: g/L}\n")
        assert got == {"hb": {"value": 118.0, "unit": "g/L"}}
        with pytest.raises(MappingError, match="cannot convert g/dL to mmol/L"):
            fields(tmp_path, "hb: {quantity: {value: 'OBX[1]-5', unit: 'OBX[1]-6'}, to_unit: mmol/L}\n")

    def test_derived_age_in_months(self, tmp_path: Path) -> None:
        """`derive:` computes from other values: a child born 2024-10-08 is 6 months on 2025-04-10."""
        got = fields(
            tmp_path,
            "age: {derive: age_in_months, args: {birth: {const: '20241008'}, at: {const: '20250410'}}}\n",
        )
        assert got == {"age": 6}

    def test_unknown_derived_value_is_a_compile_error(self, tmp_path: Path) -> None:
        """A misspelt derived value fails at load time and lists the known ones."""
        with pytest.raises(ConfigErrors, match=r"unknown derived value 'age_in_month'.*age_in_months"):
            fields(tmp_path, "age: {derive: age_in_month, args: {}}\n")

    def test_plain_mapping_is_a_nested_object(self, tmp_path: Path) -> None:
        """A mapping of names to rules (no rule keywords) is a nested object."""
        assert fields(tmp_path, "person: {name: PID-5, sex: {path: PID-8, convert: sex}}\n") == {
            "person": {"name": "陈思雨", "sex": "2"}
        }


class TestCodeTables:
    def test_lookup_gives_the_row_or_one_column(self, tmp_path: Path) -> None:
        """`table:` maps a local code to the standard code row; `table_column:` picks one column."""
        (tmp_path / "codes").mkdir()
        (tmp_path / "codes" / "lis.csv").write_text(
            "local_code,code,system,display,unit\nHGB,718-7,LOINC,血红蛋白,g/L\n", encoding="utf-8-sig"
        )
        got = fields(
            tmp_path,
            """
            std: {path: 'OBX[1]-3.1', table: lis}
            loinc: {path: 'OBX[1]-3.1', table: lis, table_column: code}
            none: {path: 'OBX[2]-3.1', table: lis}
            """,
        )
        assert got["std"]["code"] == "718-7" and got["loinc"] == "718-7" and got["none"] is None

    def test_gbk_csv_from_chinese_excel_is_read(self, tmp_path: Path) -> None:
        """A table saved by Chinese Excel (GBK, no BOM) reads correctly."""
        path = tmp_path / "t.csv"
        path.write_bytes("local_code,code,display\nHGB,718-7,血红蛋白\n".encode("gbk"))
        assert load_code_table(path).lookup("HGB")["display"] == "血红蛋白"

    def test_duplicate_local_code_is_an_error_with_its_line(self, tmp_path: Path) -> None:
        """The second row with the same local code is reported with its line."""
        path = tmp_path / "dup.csv"
        path.write_text("local_code,code\nA,1\nB,2\nA,3\n", encoding="utf-8")
        with pytest.raises(ConfigError, match=r"dup\.csv:4: local code 'A' appears twice"):
            load_code_table(path)


class TestRows:
    def test_row_input_reads_columns(self, tmp_path: Path) -> None:
        """`input: row` mappings read database columns by name (for the DB-poll channel)."""
        body = """
        input: row
        records:
          - type: T
            record_id: "exam:{exam_id}"
            event_time: {column: updated_at}
            fields:
              weight: {quantity: {value: weight_kg, fixed_unit: kg}}
              name: patient_name
        """
        (record,) = mapping(tmp_path, body).apply(
            {
                "exam_id": 7,
                "weight_kg": "7.6",
                "patient_name": " 李沐瑶 ",
                "updated_at": "2025-04-10T09:30:00+08:00",
            }
        )
        assert record.record_id == "exam:7"
        assert record.record == {"weight": {"value": 7.6, "unit": "kg"}, "name": "李沐瑶"}
        assert record.event_time == "2025-04-10T09:30:00+08:00"

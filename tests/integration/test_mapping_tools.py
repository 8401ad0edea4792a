"""`mch-engine mapping explain|run|test` as an interface engineer runs them, on the shipped files.

`explain` must never print a value of the message; `run` prints the records as JSON and
says which route took the message or why each candidate's condition failed. Exit codes:
0 mapped, 1 unmapped, rejected or failed, 2 usage or configuration. Neither command needs
a broker or a database: they are run with both pointing at nothing.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from engine.cli import main
from support import CHINESE, REPO, free_port

CLI = [sys.executable, "-m", "engine.cli"]
BLOOD_GB18030 = REPO / "samples" / "oru_r01_blood_routine_gb18030.hl7"
REGISTRATION = REPO / "samples" / "adt_a04_registration.hl7"
GBK_NO_MSH18 = CHINESE / "020_ORU-R01_gbk__lis-syphilis-positive-msh18-empty.hl7"
HIS_FORM = (
    b"MSH|^~\\&|HIS|FY01|MCHENGINE|FY01|20240101||ORU^R01|C1|P|2.5\rPID|1||77^^^HIS^PI\rOBR|1||9|MCH-XXX\r"
)


def mch(*args: str, lang: str = "en", **env: str) -> subprocess.CompletedProcess[str]:
    """The command as a subprocess in the repository, with broker and database unreachable."""
    dead = f"127.0.0.1:{free_port()}"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MCH_")}
    environment.update(
        PYTHONPATH=str(REPO),
        MCH_LANG=lang,
        MCH_BROKER_URL=f"amqp://guest:guest@{dead}//",
        MCH_DB_URL=f"postgresql+psycopg://postgres@{dead}/test",
        **env,
    )
    return subprocess.run(
        [*CLI, *args], cwd=REPO, env=environment, capture_output=True, text=True, encoding="utf-8", timeout=60
    )


def records_of(done: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [r for m in json.loads(done.stdout)["messages"] for r in m["records"]]


def patient_values(raw: bytes, encoding: str) -> set[str]:
    """Every component of the patient's segments and of the results (names, ids, dates of
    birth, addresses, phone numbers, values) that is not configuration text as well."""
    config = (REPO / "routes.yaml").read_text(encoding="utf-8") + "".join(
        p.read_text(encoding="utf-8")
        for p in (REPO / "mappings").rglob("*.yaml")
        if not p.name.endswith("_test.yaml")  # these quote the samples
    )
    out = set()
    for line in re.split(r"[\r\n]+", raw.decode(encoding)):
        fields = line.split("|")
        if fields[0] not in ("PID", "NK1", "PV1", "OBX", "NTE"):
            continue
        chosen = fields[5:6] + fields[7:8] if fields[0] == "OBX" else fields[1:]
        for value in re.split(r"[|^~&]", "|".join(chosen)):
            if (len(value) >= 3 or re.search("[\u4e00-\u9fff]", value)) and value not in config:
                out.add(value)
    return out


# --------------------------------------------------------------------------- explain


@pytest.mark.parametrize(
    ("sample", "channel", "encoding"),
    [
        (BLOOD_GB18030, "lis_gbk", "gb18030"),
        (REGISTRATION, "hospital", "utf-8"),
        (CHINESE / "010_ORU-R01_gb18030__delivery-record.hl7", "lis_gbk", "gb18030"),
        (
            CHINESE / "022_ORU-R01_utf-8__prenatal-visit-risk-yellow-purple-repetition.hl7",
            "hospital",
            "utf-8",
        ),
    ],
)
@pytest.mark.parametrize("lang", ["zh", "en"])
def test_explain_prints_no_patient_value_that_run_prints(
    sample: Path, channel: str, encoding: str, lang: str
) -> None:
    """Names, ID numbers, birth dates and results of the sample appear in `run`'s output, never in `explain`'s."""
    values = patient_values(sample.read_bytes(), encoding)
    assert len(values) >= 5
    explained = mch("mapping", "explain", str(sample), "--channel", channel, lang=lang)
    assert explained.returncode == 0, explained.stderr
    assert "PID-5" in explained.stdout and ".person.name" in explained.stdout
    assert [v for v in values if v in explained.stdout + explained.stderr] == []
    ran = mch("mapping", "run", str(sample), "--channel", channel, lang=lang)
    assert ran.returncode == 0, ran.stderr
    assert len([v for v in values if v in ran.stdout]) >= 3  # the check above can fail


def test_explain_says_obx3_fills_the_loinc_code_only_through_the_code_table(tmp_path: Path) -> None:
    """A local code the table lacks: explain counts it as not listed, and run stores no standard code for it."""
    raw = BLOOD_GB18030.read_bytes().replace(b"|PLT^", b"|ZZZ99^", 1)
    sample = tmp_path / "unknown_code.hl7"
    sample.write_bytes(raw)
    done = mch("mapping", "explain", str(sample), "--channel", "lis_gbk")
    assert done.returncode == 0, done.stderr
    line = next(
        ln for ln in done.stdout.splitlines() if ln.strip().endswith("listed)]") and "standard_code " in ln
    )
    assert line.split() == [
        "OBX-3.1",
        "→",
        "LabResult.observations.standard_code",
        "[if",
        "OBX-3.3",
        "==",
        "L;",
        "through",
        "code",
        "table",
        "lis_tests,",
        "only",
        "codes",
        "it",
        "lists",
        "(2",
        "of",
        "this",
        "message's",
        "3",
        "listed)]",
    ]
    zh = mch("mapping", "explain", str(sample), "--channel", "lis_gbk", lang="zh")
    assert "经代码表 lis_tests，仅表中列出的代码（本消息 3 个代码中 2 个在表中）" in zh.stdout
    ran = mch("mapping", "run", str(sample), "--channel", "lis_gbk")
    assert ran.returncode == 0, ran.stderr
    observations = records_of(ran)[0]["record"]["observations"]
    assert {o["code"]: "standard_code" in o for o in observations} == {
        "HGB": True,
        "ZZZ99": False,
        "WBC": True,
    }


def test_no_route_for_the_type_is_told_apart_from_conditions_that_failed(tmp_path: Path) -> None:
    """ADT^A40 on lis_gbk: no route takes it there. A HIS form no route knows: every ORU route named with its condition."""
    a40 = tmp_path / "a40.hl7"
    a40.write_bytes(b"MSH|^~\\&|HIS|FY01|MCHENGINE|FY01|20240101||ADT^A40|C2|P|2.5\rPID|1||77^^^HIS^PI\r")
    done = mch("mapping", "explain", str(a40), "--channel", "lis_gbk")
    assert done.returncode == 1
    assert "unmapped: no route takes ADT^A40 from channel lis_gbk" in done.stdout
    assert "(routes person-merge take ADT^A40, but not from channel lis_gbk)" in done.stdout
    zh = mch("mapping", "explain", str(a40), "--channel", "lis_gbk", lang="zh")
    assert zh.returncode == 1 and "未映射：没有路由接收来自通道 lis_gbk 的 ADT^A40" in zh.stdout

    form = tmp_path / "form.hl7"
    form.write_bytes(HIS_FORM)
    done = mch("mapping", "explain", str(form), "--channel", "lis_gbk")
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    start = lines.index(
        "unmapped: 6 route(s) take ORU^R01 from channel lis_gbk, but none of their conditions holds:"
    )
    assert lines[start + 1 : start + 7] == [
        "  lab-results: when MSH-3 == LIS",
        "  pregnancy: when MSH-3 == HIS and OBR-4.1 in [MCH-REG, MCH-ANC]",
        "  delivery-and-newborn: when MSH-3 == HIS and OBR-4.1 in [MCH-DEL, MCH-NB]",
        "  postpartum: when MSH-3 == HIS and OBR-4.1 in [MCH-PP, MCH-PP42]",
        "  child-health: when MSH-3 == HIS and OBR-4.1 == MCH-CHK",
        "  premarital: when MSH-3 == HIS and OBR-4.1 == MCH-PME",
    ]
    shown = done.stdout.replace(str(tmp_path), "")  # pytest's folder may be pytest-77
    assert "no route takes" not in shown and "77" not in shown
    zh = mch("mapping", "explain", str(form), "--channel", "hospital", lang="zh")
    assert "未映射：7 条路由接收来自通道 hospital 的 ORU^R01，但它们的条件都不成立：" in zh.stdout


# --------------------------------------------------------------------------- run


def test_run_prints_the_records_as_json_and_the_route() -> None:
    """The shipped registration sample: exit 0, one Person with the sample's name, routed to record_store."""
    done = mch("mapping", "run", str(REGISTRATION))
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["channel"] == "hospital"
    (message,) = document["messages"]
    assert (message["status"], message["routes"]) == ("mapped", ["persons"])
    (record,) = message["records"]
    assert (record["route"], record["to"], record["record_type"]) == ("persons", ["record_store"], "Person")
    pid = next(ln for ln in REGISTRATION.read_text(encoding="utf-8").splitlines() if ln.startswith("PID|"))
    assert record["record"]["person"]["name"] == pid.split("|")[5].split("^")[0]
    assert "route: persons" in done.stderr and "mapped: 1 message(s), 1 record(s)" in done.stderr


def test_run_says_why_each_candidate_condition_failed_with_the_values_it_saw(tmp_path: Path) -> None:
    form = tmp_path / "form.hl7"
    form.write_bytes(HIS_FORM)
    done = mch("mapping", "run", str(form), "--channel", "hospital")
    assert done.returncode == 1
    (message,) = json.loads(done.stdout)["messages"]
    assert (message["status"], message["records"]) == ("unmapped", [])
    pregnancy = next(c for c in message["candidates"] if c["route"] == "pregnancy")
    assert pregnancy == {
        "route": "pregnancy",
        "when": "MSH-3 == HIS and OBR-4.1 in [MCH-REG, MCH-ANC]",
        "holds": False,
        "saw": {"MSH-3": "HIS", "OBR-4.1": "MCH-XXX"},
    }
    assert (
        "  lab-results: when MSH-3 == LIS (it saw MSH-3=HIS)" in done.stderr.splitlines()
        and "1 of 1 message(s) unmapped or failed" in done.stderr
    )
    zh = mch("mapping", "run", str(form), "--channel", "hospital", lang="zh")
    assert "  lab-results：条件 MSH-3 == LIS（实际值 MSH-3=HIS）" in zh.stderr.splitlines()


def test_run_shows_a_mapping_failure_as_the_dead_letter_would(tmp_path: Path) -> None:
    """An impossible OBX-14: exit 1, the file:line, field path and rule; no record."""
    bad = tmp_path / "bad.hl7"
    bad.write_bytes(BLOOD_GB18030.read_bytes().replace(b"20250310112000", b"20251399112000", 1))
    done = mch("mapping", "run", str(bad), "--channel", "lis_gbk")
    assert done.returncode == 1
    (message,) = json.loads(done.stdout)["messages"]
    assert message["status"] == "failed" and message["records"] == []
    assert message["error"].startswith(
        "transform: ../common/observations.yaml:3: OBX-14 = '20251399112000': hl7_datetime"
    )
    assert f"mapping failed (as the dead letter would show it): {message['error']}" in done.stderr
    assert "Traceback" not in done.stderr
    explained = mch("mapping", "explain", str(bad), "--channel", "lis_gbk")
    assert explained.returncode == 1
    assert "the mapping fails on this message; the reason may quote patient data" in explained.stdout
    assert "20251399112000" not in explained.stdout + explained.stderr


def test_a_gbk_message_without_msh18_reads_on_the_gb18030_channel_only() -> None:
    """GBK bytes, MSH-18 empty: mapped on lis_gbk with the Chinese name intact; rejected (AR) on the UTF-8 channel."""
    done = mch("mapping", "run", str(GBK_NO_MSH18), "--channel", "lis_gbk")
    assert done.returncode == 0, done.stderr
    (message,) = json.loads(done.stdout)["messages"]
    assert message["encoding"] == "gb18030"
    assert records_of(done)[0]["record"]["person"]["name"] == _expected(GBK_NO_MSH18.name)[0]["name"]
    refused = mch("mapping", "run", str(GBK_NO_MSH18), "--channel", "hospital")
    assert refused.returncode == 1
    (message,) = json.loads(refused.stdout)["messages"]
    assert message["status"] == "rejected" and "GB18030" in message["error"]
    assert "rejected (AR, never transformed): MSH: bytes are not valid utf-8" in refused.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            ("mapping", "run", "samples/adt_a04_registration.hl7", "--channel", "nosuch"),
            "no channel named nosuch",
        ),
        (("mapping", "run", "no-such-file.hl7"), "cannot read no-such-file.hl7"),
        (("mapping", "explain", "no-such-file.hl7"), "cannot read no-such-file.hl7"),
        (("mapping", "run", "samples/adt_a04_registration.hl7", "--config", "no-such.yaml"), "no-such.yaml"),
        (("mapping", "run"), "the following arguments are required"),
    ],
)
def test_usage_and_configuration_problems_exit_2(args: tuple[str, ...], says: str) -> None:
    done = mch(*args)
    assert done.returncode == 2 and says in done.stderr and done.stdout == ""
    assert "Traceback" not in done.stderr


def _expected(name: str) -> list[dict[str, str]]:
    with (CHINESE / "expected.tsv").open(encoding="utf-8") as fh:
        return [r for r in csv.DictReader(fh, delimiter="\t") if r["file"] == name]


@pytest.mark.parametrize("name", sorted({p.name for p in CHINESE.glob("*.hl7")}))
def test_run_on_the_chinese_set_gives_what_expected_tsv_says(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each file on the channel its charset needs: exit 0 with the record type, name and observation
    count of expected.tsv, or exit 1 for the rejected ones; ID numbers with a bad check digit flagged."""
    rows = _expected(name)
    channel = "lis_gbk" if rows[0]["channel_encoding"] == "gb18030" else "hospital"
    code = main(
        [
            "--lang",
            "en",
            "mapping",
            "run",
            str(CHINESE / name),
            "--channel",
            channel,
            "--config",
            str(REPO / "routes.yaml"),
        ]
    )
    messages = json.loads(capsys.readouterr().out)["messages"]
    assert code == (0 if all(r["disposition"].startswith("stored") for r in rows) else 1)
    assert len(messages) == len(rows)
    for row, message in zip(rows, messages, strict=True):
        assert message["control_id"] == row["control_id"]
        if row["disposition"] == "rejected":
            assert message["status"] == "rejected" and message["records"] == []
            continue
        main_record = next(r["record"] for r in message["records"] if r["record_type"] == row["record_type"])
        assert row["name"] in json.dumps(main_record, ensure_ascii=False)
        assert len(main_record.get("observations", [])) == int(row["n_obs"])
        assert bool(main_record.get("flags")) == (row["disposition"] == "stored-flagged")


def test_mapping_test_speaks_chinese_by_default_and_english_on_request() -> None:
    zh = mch("mapping", "test", "mappings/lis", lang="zh")
    assert zh.returncode == 0, zh.stdout
    assert zh.stdout.splitlines()[0].startswith("通过 mappings/lis/oru_r01_test.yaml:")
    assert re.fullmatch(r"\d+ 个通过，0 个失败", zh.stdout.splitlines()[-1])
    en = mch("--lang", "en", "mapping", "test", "mappings/lis", lang="zh")
    assert re.fullmatch(r"\d+ passed, 0 failed", en.stdout.splitlines()[-1])


def test_mapping_test_says_what_differs_in_the_chosen_language(tmp_path: Path) -> None:
    """A wrong expectation: exit 1, the field, what was expected and what came out, in Chinese or English."""
    (tmp_path / "m.yaml").write_text(
        "records:\n  - type: Sample\n    record_id: 'p:{MSH-10}'\n    fields:\n      sender: MSH-3\n",
        encoding="utf-8",
    )
    (tmp_path / "m_test.yaml").write_text(
        "tests:\n"
        "  - name: 发送方\n"
        "    hl7: 'MSH|^~\\&|HIS|FY01|E|F|20240101||ADT^A04|C9|P|2.5'\n"
        "    expect:\n"
        "      - {type: Sample, record_id: 'p:C9', fields: {sender: LIS, ward: 产科}}\n",
        encoding="utf-8",
    )
    zh = mch("mapping", "test", str(tmp_path), lang="zh")
    assert zh.returncode == 1
    assert zh.stdout.splitlines() == [
        f"失败 {tmp_path / 'm_test.yaml'}:2: 发送方",
        "       records[0] fields.sender: 应为 'LIS'，实际 'HIS'",
        "       records[0] fields.ward: 应为 '产科'，但记录中没有此字段",
        "0 个通过，1 个失败",
    ]
    en = mch("mapping", "test", str(tmp_path))
    assert en.stdout.splitlines()[1:] == [
        "       records[0] fields.sender: expected 'LIS', got 'HIS'",
        "       records[0] fields.ward: expected '产科', but the record has no such field",
        "0 passed, 1 failed",
    ]

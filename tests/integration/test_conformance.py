"""Every message of the public conformance corpus is answered, and the engine keeps serving.

The corpus (386 messages written by others, many deliberately broken) is sent
over real MLLP. Each must get AA, or AR with a reason; the manifest says which
messages are malformed, so an AR for a good message (or an AA for a broken one)
fails the test. The synthetic Chinese set is checked against its expected.tsv.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Iterator

import pytest

from channels.mllp.ack import parse_acks
from support import CHINESE, CONFORMANCE, REPORT, RunningEngine, hl7, msa, scalar, write_routes

if not (CONFORMANCE / "manifest.tsv").is_file():
    pytest.fail(f"conformance corpus not found at {CONFORMANCE} (set MCH_CONFORMANCE_DIR)")


# Messages whose MSH-2 breaks the standard's rule (four or five distinct ASCII punctuation
# characters): their fields cannot be read unambiguously, so AR, naming MSH-2, is the answer.
BAD_DELIMITERS = {
    "hapifhir-hapi-hl7v2/030_ADT-A01_2.5__ExtendedMinLowerLayerProtocolTest-m0.hl7": "U+FFFD in MSH-2",
    "nHapiNET-nHapi/010_2-x_2.7__sys2.hl7": "MSH-2 is '0'",
    "LinuxForHealth-hl7v2-fhir-converter/006_ORU-R01_2.6__Hl7ORUMessageTest-m0.hl7": "'\\' twice",
    "LinuxForHealth-hl7v2-fhir-converter/020_ADT-A01_2.6__sample_win.hl7": "'\\' twice",
    "LinuxForHealth-hl7v2-fhir-converter/042_ADT-A01_2.6__sample_unix.hl7": "'\\' twice",
    "CDCgov-data-exchange-hl7/007_ORU-R01_2.5.1__Lyme_WithBadDelimiters.hl7": "MSH-2 is '&&&&'",
    "crs4-hl7apy/003_RSP-SLI_2.5__test_to_string-m1.hl7": "letter 'r' in MSH-2",
    "crs4-hl7apy/017_ADT-A01_2.6__test_parser-m8.hl7": "MSH-2 is '^&&^'",
    "crs4-hl7apy/018_ADT-A01_2.7__test_parser-m9.hl7": "MSH-2 is '^&&^##'",
    "Bugs5382-node-hl7-client/032_OUL-R22_2.5.1__hl7.sanity.test-m12.hl7": "'\\' twice",
}

# Batches whose envelope cuts a message in two: the segments after the inner BHS/FHS belong to
# no MSH, so the one splitter refuses the whole batch (guarantee 6; docs/mllp.md, Batches).
BROKEN_ENVELOPES = {
    "johnpaulett-python-hl7/014_ADT-A04_2.5__samples-m9.hl7": "BHS inside a message, PID after it",
    "johnpaulett-python-hl7/022_ADT-A04_2.5__samples-m18.hl7": "BHS inside a message, PID after it",
    "johnpaulett-python-hl7/023_ADT-A04_2.5__samples-m19.hl7": "FHS inside a message, not first",
}


def _manifest() -> list[dict[str, str]]:
    """The public messages; the synthetic Chinese ones are checked against expected.tsv below."""
    with (CONFORMANCE / "manifest.tsv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return [r for r in rows if not r["path"].startswith("chinese-synthetic/")]


def _expect_reject(row: dict[str, str]) -> bool:
    """The manifest's own account of a message that no engine should accept."""
    note = row["note"]
    broken = ("MSH-10 empty", "MSH-9 empty", "no usable MSH", "MSH-12 empty")
    return (
        row["encoding"] == "unknown-8bit"
        or any(b in note for b in broken)
        or row["path"] in BAD_DELIMITERS
        or row["path"] in BROKEN_ENVELOPES
        or _charset_contradicted(row)
    )


def _charset_contradicted(row: dict[str, str]) -> bool:
    """UTF-8 bytes (the manifest's `encoding`) under a single-byte MSH-18 such as 8859/1.

    Read as declared they would be stored as mojibake ("TestpatiÃ«nt"), so the answer is AR
    naming MSH-18 (docs/mllp.md, Character sets).
    """
    declared = re.search(r"MSH-18=(\S+)", row["note"])
    return row["encoding"] == "utf-8" and declared is not None and declared[1].startswith("8859/")


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEngine]:
    tmp = tmp_path_factory.mktemp("conformance")
    with RunningEngine(write_routes(tmp, database=f"sqlite:///{tmp}/engine.db")) as running:
        yield running


def test_every_public_message_is_answered(engine: RunningEngine) -> None:
    """386 public messages: AA for the sound ones, AR with a reason for the broken, none unanswered."""
    assert len(_manifest()) == 386
    rows = _manifest()
    payloads = [(CONFORMANCE / r["path"]).read_bytes() for r in rows]
    acks = engine.send(payloads, concurrency=4)
    tally: Counter[str] = Counter()
    wrong: list[str] = []
    for row, ack in zip(rows, acks, strict=True):
        assert ack is not None, f"{row['path']}: no answer"
        answers = parse_acks(ack.decode("latin-1"))
        assert answers, f"{row['path']}: answer has no MSA: {ack[:200]!r}"
        for a in answers:
            tally[a.code] += 1
            if a.code == "AR":
                assert a.text, f"{row['path']}: AR without a reason"
        codes = {a.code for a in answers}
        expected = "AR" if _expect_reject(row) else "AA"
        if codes != {expected}:
            wrong.append(
                f"{row['path']}: got {sorted(codes)}, manifest implies {expected}: {answers[0].text}"
            )
    REPORT.append(f"conformance corpus: {len(rows)} public files, answers {dict(sorted(tally.items()))}")
    assert not wrong, "\n".join(wrong)

    # Still serving: a good message after all of that goes through.
    good = hl7(
        "MSH|^~\\&|HIS|FY01|MCHENGINE|FY01|20240321083215||ADT^A04|AFTER-CORPUS|P|2.5",
        "PID|1||1^^^HIS^PI||测试",
    )
    assert msa(engine.send([good])[0])[:2] == ("AA", "AFTER-CORPUS")
    # Nothing went unjournaled: every answer is a journal row, or a duplicate counted on one
    # (several public samples reuse a sender and control id).
    journal = engine.journal
    answered = sum(tally.values()) + 1
    rows_and_dups = "select count(*) + sum(duplicates) from journal_messages"
    assert scalar(journal, rows_and_dups) == answered
    REPORT.append(
        f"conformance journal: {scalar(journal, 'select count(*) from journal_messages')} rows, "
        f"{scalar(journal, 'select sum(duplicates) from journal_messages')} answered as duplicates "
        "(public samples reuse sender + control id)"
    )


def test_chinese_synthetic_set_matches_expected_acks(engine: RunningEngine) -> None:
    """Each synthetic Chinese message gets the MSA-1 and control id expected.tsv gives."""
    with (CHINESE / "expected.tsv").open(encoding="utf-8") as fh:
        expected = list(csv.DictReader(fh, delimiter="\t"))
    by_file: dict[str, list[dict[str, str]]] = {}
    for row in expected:
        by_file.setdefault(row["file"], []).append(row)
    mismatches = []
    for name, rows in sorted(by_file.items()):
        channel = "lis_gbk" if rows[0]["channel_encoding"] == "gb18030" else "hospital"
        ack = engine.send([(CHINESE / name).read_bytes()], channel=channel)[0]
        assert ack is not None, f"{name}: no answer"
        answers = parse_acks(ack.decode(rows[0]["channel_encoding"], errors="replace"))
        got = [(a.code, a.control_id) for a in answers]
        want = [(r["ack"], r["control_id"]) for r in sorted(rows, key=lambda r: int(r["msg_index"]))]
        if got != want:
            mismatches.append(f"{name}: got {got}, expected {want}")
        if rows[0]["ack"] == "AR" and rows[0]["reason"]:
            assert answers[0].text, f"{name}: AR without a reason"
    assert not mismatches, "\n".join(mismatches)


def test_charset_mismatch_is_rejected_with_the_byte_offset(engine: RunningEngine) -> None:
    """MSH-18 says UTF-8 but the bytes are GB18030: AR naming offset 162, raw bytes kept."""
    raw = (CHINESE / "028_ORU-R01_gb18030__MALFORMED-msh18-utf8-but-gb18030-bytes.hl7").read_bytes()
    code, control, text = msa(engine.send([raw])[0])
    assert (code, control) == ("AR", "LIS240910102544001877")
    assert "offset 162" in text and "GB18030" in text
    journal = engine.journal
    kept = scalar(journal, "select raw from journal_messages where control_id = 'LIS240910102544001877'")
    assert bytes(kept) == raw

"""Oracle test: transforms.hl7v2 against python-hl7 on every file of the conformance corpus.

For each `.hl7` file (recursively, `chinese-synthetic/` included) both readers parse the same
decoded text, and every segment name, field, repetition, component and sub-component must
agree: raw text at field and repetition level, decoded values (python-hl7's `unescape`) at
every level. `read_msh` is checked against python-hl7's MSH as well.

Harness rules (applied to every file, not exceptions):
- bytes are decoded with the manifest's `encoding` column (unknown-8bit -> latin-1);
- python-hl7 only splits segments on CR, so it is given the text with CRLF/LF turned into CR
  and blank lines removed (our reader accepts all three terminators by design);
- files starting with FHS/BHS go through `hl7.parse_file` / `hl7.parse_batch` and our
  `split_batch`; everything else through `hl7.parse` and `Message`.

Where python-hl7 is wrong or decides differently, the file is listed BY NAME in `ALLOWED`
with the kind of difference; only that kind is tolerated in that file, and the test fails if
a listed difference no longer occurs (so the list cannot go stale).
"""

from __future__ import annotations

import csv
import logging
import os
import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import hl7
import hl7.containers
import hl7.util
import pytest

from core.errors import ParseError
from transforms.hl7v2 import HL7_NULL, SEGMENT_NAME, Message, NullValue, Segment, read_msh, split_batch

# python-hl7's unescape calls the deprecated `logger.warn`; pyproject turns warnings into errors.
pytestmark = pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated:DeprecationWarning")

REPO = Path(__file__).resolve().parents[3]
CORPUS = REPO / os.environ.get("MCH_CONFORMANCE_DIR", "../shared/conformance/hl7v2")

CODECS = {
    "ascii": "ascii",
    "utf-8": "utf-8",
    "gb18030": "gb18030",
    "gbk": "gbk",
    "unknown-8bit": "latin-1",  # bytes of unknown meaning: latin-1 maps every byte
}

# Kinds of known difference between python-hl7 and us.
TRAILING_WS = "trailing-whitespace"
LINE_BREAKS = "line-breaks"
BAD_ESCAPES = "bad-escapes"

KIND_REASONS = {
    # hl7.parse() calls str.strip() on the whole message, so trailing spaces of the LAST
    # segment are lost (data loss in python-hl7). Tolerated only in the last segment, only when
    # our raw field equals python-hl7's plus trailing whitespace.
    TRAILING_WS: "python-hl7 strips trailing whitespace off the last segment (str.strip)",
    # python-hl7 decodes \.br\ (and \.sp\, \.ce\) to CR, the segment terminator; we decode to
    # LF so decoded text can never be mistaken for a segment break. Tolerated only when the
    # values are equal after mapping our LF to CR.
    LINE_BREAKS: "python-hl7 decodes \\.br\\ to CR, we decode it to LF",
    # python-hl7 silently drops unterminated escapes ("2.3\r") and unknown sequences ("\"\"");
    # we keep them as literal text (HL7 v2.5 2.7.4: never lose data). Tolerated only for values
    # whose raw text contains the escape character.
    BAD_ESCAPES: "python-hl7 drops unterminated/unknown escape sequences, we keep them",
}

# file (relative to the corpus) -> kinds of difference expected in it
ALLOWED: dict[str, set[str]] = {
    # last segment ends with spaces: "PV2|...|20010101 "
    "Bugs5382-node-hl7-client/002_ADT-A08_2.4__hl7..parser.test-m1.hl7": {TRAILING_WS},
    # last segment OBX-14 "20120916  "
    "LinuxForHealth-hl7v2-fhir-converter/002_VXU-V04_2.5.1__IssueFixTest-m1.hl7": {TRAILING_WS},
    # last segment ends with "| "
    "LinuxForHealth-hl7v2-fhir-converter/025_VXU-V04_2.5.1xxxxx__SegmentUtilTest-m7.hl7": {TRAILING_WS},
    # last segment OBX-11 "F "
    "hapifhir-hapi-hl7v2/019_ORU-R01_2.4__EncodingCharactersTest-m0.hl7": {TRAILING_WS},
    # last segment OBX-5 FT text ends with a space
    "hapifhir-hapi-hl7v2/037_ORU-R01_2.4__NewPipeParserTest-m8.hl7": {TRAILING_WS},
    # NTE-3 formatted text with \.br\
    "hapifhir-hapi-hl7v2/020_ORU_2.3__EscapeTest-m0.hl7": {LINE_BREAKS},
    # PACS report text (TX) joined with \.br\
    "chinese-synthetic/005_ORU-R01_utf-8__pacs-nt-ultrasound.hl7": {LINE_BREAKS},
    "chinese-synthetic/007_ORU-R01_utf-8__pacs-obstetric-ultrasound-long-text.hl7": {LINE_BREAKS},
    "chinese-synthetic/019_ORU-R01_utf-8__pacs-late-pregnancy-rare-char-ext-e.hl7": {LINE_BREAKS},
    "chinese-synthetic/027_ORU-R01_utf-8__pacs-report-all-hl7-escapes.hl7": {LINE_BREAKS},
    # MSH-12 is "2.3\r" with a literal backslash (a string-literal escape left in the sample)
    "johnpaulett-python-hl7/003_ACK-A01_2.3xr__test_mllp-m0.hl7": {BAD_ESCAPES},
    # OBR-2 is "\"\"" (unknown escape)
    "CDCgov-data-exchange-hl7/019_ORU-R01_2.5.1__KY_Hepatitis_Round_2_TM4.hl7": {BAD_ESCAPES},
    # fuzzer outputs with odd escape characters ("y", "\") left unterminated in values
    "nHapiNET-nHapi/001_ADT-A40_2.7__id_000168_sig_02_src_002426_002144_op_splice_rep.hl7": {BAD_ESCAPES},
    "nHapiNET-nHapi/003_ACK-x_2.2x0__regex1.hl7": {BAD_ESCAPES},
    "nHapiNET-nHapi/006_ADT-A40_2.4__id_000123_sig_02_src_000372_002313_op_splice_rep.hl7": {BAD_ESCAPES},
    "nHapiNET-nHapi/008_ADT-A07_2.7__id_000109_sig_02_src_001098_002192_op_splice_rep.hl7": {BAD_ESCAPES},
    "nHapiNET-nHapi/018_ADT-A60_2.7__id_000146_sig_02_src_000682_002159_op_splice_rep.hl7": {BAD_ESCAPES},
}

_HEADERS = ("MSH", "FHS", "BHS")
_ENCODING_IN_NAME = re.compile(r"_(utf-8|gb18030|gbk|ascii)__")


@dataclass
class Report:
    """What was compared, tolerated and skipped over the whole corpus."""

    files: int = 0
    messages: int = 0
    segments: int = 0
    fields: int = 0
    values: int = 0
    path_lookups: int = 0
    read_msh_checked: int = 0
    tolerated: Counter[tuple[str, str]] = field(default_factory=Counter)
    pyhl7_failed: dict[str, str] = field(default_factory=dict)
    both_rejected: dict[str, str] = field(default_factory=dict)
    read_msh_rejected: dict[str, str] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


@dataclass
class FileCheck:
    """Comparison state for one file."""

    name: str
    report: Report
    allowed: set[str]

    def fail(self, where: str, ours: object, theirs: object) -> None:
        self.report.failures.append(f"{self.name}: {where}: ours={ours!r} python-hl7={theirs!r}")

    def tolerate(self, kind: str) -> bool:
        if kind in self.allowed:
            self.report.tolerated[(self.name, kind)] += 1
            return True
        return False


def _manifest_encodings() -> dict[str, str]:
    manifest = CORPUS / "manifest.tsv"
    if not manifest.is_file():
        return {}
    with manifest.open(newline="", encoding="utf-8") as f:
        return {row["path"]: row["encoding"] for row in csv.DictReader(f, delimiter="\t")}


def _codec(name: str, encodings: dict[str, str]) -> str:
    label = encodings.get(name)
    if label is None:  # not in the manifest: the chinese-synthetic names carry it
        m = _ENCODING_IN_NAME.search(name)
        if m is None:
            raise AssertionError(f"{name}: no encoding in manifest.tsv or in the file name")
        label = m.group(1)
    return CODECS[label]


@contextmanager
def _quiet_python_hl7() -> Iterator[None]:
    """python-hl7 logs an exception for every escape it cannot decode: silence that."""
    loggers = [logging.getLogger(m.__file__ or "") for m in (hl7.util, hl7.containers)]
    for lg in loggers:
        lg.disabled = True
    try:
        yield
    finally:
        for lg in loggers:
            lg.disabled = False


def _cr_only(text: str) -> str:
    lines = text.replace("\r\n", "\r").replace("\n", "\r").split("\r")
    return "\r".join(line for line in lines if line.strip())


def _python_hl7_messages(text: str) -> list[hl7.Message]:
    text = _cr_only(text)
    head = text.lstrip()[:3]
    if head == "FHS":
        return [msg for batch in hl7.parse_file(text) for msg in batch]
    if head == "BHS":
        return list(hl7.parse_batch(text))
    return [hl7.parse(text)]


def _tree(node: object, depth: int) -> list:
    """python-hl7 nodes as nested lists of exactly `depth` levels (its shape varies)."""
    if isinstance(node, str):
        for _ in range(depth):
            node = [node]
        return node  # type: ignore[return-value]
    return [_tree(child, depth - 1) for child in node]  # type: ignore[attr-defined]


def _expected(theirs: hl7.Message, raw: str, deeper: tuple[str, ...]) -> str | NullValue | None:
    """What our reader should return for `raw`, by our documented rules, via python-hl7."""
    if not raw:
        return None
    if raw == '""':
        return HL7_NULL
    if any(sep in raw for sep in deeper):
        return raw  # still structured: returned raw, undecoded
    return theirs.unescape(raw)


def _same_value(
    check: FileCheck,
    where: str,
    ours: object,
    theirs: object,
    raw: str,
    escape: str,
) -> None:
    check.report.values += 1
    if ours == theirs or (ours is theirs):
        return
    if (
        isinstance(ours, str)
        and isinstance(theirs, str)
        and ours.replace("\n", "\r") == theirs
        and check.tolerate(LINE_BREAKS)
    ):
        return
    if escape in raw and check.tolerate(BAD_ESCAPES):
        return
    check.fail(where, ours, theirs)


def _path_name_ok(name: str) -> bool:
    """Segments a mapping path can name (a corpus file has a segment `000`; paths cannot)."""
    return SEGMENT_NAME.fullmatch(name) is not None


def _compare_field(
    check: FileCheck,
    ours_msg: Message,
    seg: Segment,
    occurrence: int,
    theirs: hl7.Message,
    pfield: object,
    fi: int,
    where: str,
) -> None:
    d = ours_msg.delimiters
    reps = _tree(pfield, 3) if pfield is not None else []
    if reps == [[[""]]]:
        reps = []
    raw_reps = [d.component.join(d.subcomponent.join(subs) for subs in rep) for rep in reps]
    if seg.repetitions(fi) != raw_reps:
        check.fail(f"{where} repetitions", seg.repetitions(fi), raw_reps)
        return
    for ri, rep in enumerate(reps, 1):
        raw_rep = raw_reps[ri - 1]
        _same_value(
            check,
            f"{where}[{ri}]",
            seg.get(fi, ri),
            _expected(theirs, raw_rep, (d.component, d.subcomponent)),
            raw_rep,
            d.escape,
        )
        for ci, subs in enumerate(rep, 1):
            raw_comp = d.subcomponent.join(subs)
            _same_value(
                check,
                f"{where}[{ri}].{ci}",
                seg.get(fi, ri, ci),
                _expected(theirs, raw_comp, (d.subcomponent,)),
                raw_comp,
                d.escape,
            )
            for si, raw_sub in enumerate(subs, 1):
                ours_sub = seg.get(fi, ri, ci, si)
                _same_value(
                    check,
                    f"{where}[{ri}].{ci}.{si}",
                    ours_sub,
                    _expected(theirs, raw_sub, ()),
                    raw_sub,
                    d.escape,
                )
                if _path_name_ok(seg.name):
                    # The same value through the public path API.
                    path = f"{seg.name}[{occurrence}]-{fi}[{ri}].{ci}.{si}"
                    check.report.path_lookups += 1
                    got = ours_msg.get(path)
                    if got != ours_sub and got is not ours_sub:
                        check.fail(f"path {path}", got, ours_sub)
            if seg.get(fi, ri, ci, len(subs) + 1) is not None:
                check.fail(f"{where}[{ri}].{ci}.{len(subs) + 1} beyond", "value", None)
        if seg.get(fi, ri, len(rep) + 1) is not None:
            check.fail(f"{where}[{ri}].{len(rep) + 1} beyond", "value", None)
    if seg.get(fi, len(reps) + 1) is not None:
        check.fail(f"{where}[{len(reps) + 1}] beyond", "value", None)


def _compare_message(check: FileCheck, ours: Message, theirs: hl7.Message, label: str) -> None:
    segs = ours.segments()
    names = [seg.name for seg in segs]
    their_names = [str(pseg[0]) for pseg in theirs]
    if names != their_names:
        check.fail(f"{label} segment names", names, their_names)
        return
    check.report.messages += 1
    occurrences: Counter[str] = Counter()
    for si, (seg, pseg) in enumerate(zip(segs, theirs, strict=True)):
        check.report.segments += 1
        occurrences[seg.name] += 1
        last = si == len(segs) - 1
        for fi in range(1, max(len(seg), len(pseg)) + 1):
            where = f"{label} {seg.name}[{occurrences[seg.name]}]-{fi}"
            check.report.fields += 1
            pfield = pseg[fi] if fi < len(pseg) else None
            their_raw = str(pfield) if pfield is not None else ""
            ours_raw = seg.field(fi)
            if ours_raw != their_raw:
                if last and ours_raw.rstrip() == their_raw and check.tolerate(TRAILING_WS):
                    continue
                check.fail(where, ours_raw, their_raw)
                continue
            if seg.name in _HEADERS and fi in (1, 2):
                # The delimiters themselves: raw, never split or decoded.
                check.report.values += 1
                their_reps = [their_raw] if their_raw else []
                if seg.get(fi) != (their_raw or None) or seg.repetitions(fi) != their_reps:
                    check.fail(where, seg.get(fi), their_raw)
                continue
            _compare_field(check, ours, seg, occurrences[seg.name], theirs, pfield, fi, where)


def _check_read_msh(check: FileCheck, raw: bytes, theirs: hl7.Message, label: str) -> None:
    """read_msh on raw bytes must agree with python-hl7's MSH (when MSH is plain ASCII)."""
    try:
        header = read_msh(raw)
    except ParseError as exc:
        check.report.read_msh_rejected[f"{check.name} {label}"] = str(exc)
        return
    msh = theirs.segment("MSH")
    if not str(msh).isascii():
        return
    check.report.read_msh_checked += 1
    d_comp, d_rep = header.encoding_chars[:1] or "^", header.encoding_chars[1:2] or "~"

    def raw_field(n: int) -> str:
        return str(msh[n]) if n < len(msh) else ""

    expected = {
        "field_sep": raw_field(1),
        "encoding_chars": raw_field(2),
        "sending_app": raw_field(3),
        "sending_facility": raw_field(4),
        "receiving_app": raw_field(5),
        "receiving_facility": raw_field(6),
        "timestamp": raw_field(7),
        "message_type": raw_field(9),
        "control_id": raw_field(10),
        "processing_id": raw_field(11),
        "version": raw_field(12).split(d_rep)[0].split(d_comp)[0],
        "accept_ack": raw_field(15),
        "app_ack": raw_field(16),
        "charset": raw_field(18).split(d_rep)[0],
    }
    got = header._asdict()
    for key, value in expected.items():
        if got[key] != value:
            check.fail(f"{label} read_msh {key}", got[key], value)


def _check_file(path: Path, encodings: dict[str, str], report: Report) -> None:
    name = path.relative_to(CORPUS).as_posix()
    check = FileCheck(name, report, ALLOWED.get(name, set()))
    report.files += 1
    raw = path.read_bytes()
    codec = _codec(name, encodings)
    text = raw.decode(codec)

    head = text.lstrip(" \t\r\n\ufeff")[:3]
    is_batch = head in ("FHS", "BHS")
    ours_error: str | None = None
    try:
        ours = [Message(t) for t in split_batch(text)] if is_batch else [Message(text)]
    except ValueError as exc:  # the only exception our reader may raise
        ours, ours_error = [], str(exc)
    try:
        theirs = _python_hl7_messages(text)
    except Exception as exc:  # python-hl7 raises assorted exceptions on malformed input
        reason = f"{type(exc).__name__}: {exc}"[:120]
        if ours_error is not None:
            report.both_rejected[name] = f"ours: {ours_error} | python-hl7: {reason}"
        else:
            report.pyhl7_failed[name] = reason
        return
    if ours_error is not None:
        check.fail("our reader rejected a file python-hl7 parses", ours_error, "parsed")
        return
    if len(ours) != len(theirs):
        check.fail("message count", len(ours), len(theirs))
        return
    for i, (mine, their) in enumerate(zip(ours, theirs, strict=True), 1):
        label = f"message {i}"
        _compare_message(check, mine, their, label)
        msg_bytes = raw if not is_batch else str(mine).encode(codec)
        _check_read_msh(check, msg_bytes, their, label)


def test_reader_agrees_with_python_hl7_on_the_conformance_corpus() -> None:
    """Every value of every corpus file agrees with python-hl7, apart from named exceptions."""
    assert CORPUS.is_dir(), f"conformance corpus not found at {CORPUS} (set MCH_CONFORMANCE_DIR)"
    encodings = _manifest_encodings()
    files = sorted(p for p in CORPUS.rglob("*.hl7") if p.is_file())
    assert files, f"no .hl7 files under {CORPUS}"
    report = Report()
    with _quiet_python_hl7():
        for path in files:
            _check_file(path, encodings, report)

    present = {p.relative_to(CORPUS).as_posix() for p in files}
    stale = [
        f"{name}: listed difference {kind!r} ({KIND_REASONS[kind]}) no longer occurs"
        for name, kinds in ALLOWED.items()
        if name in present
        for kind in sorted(kinds)
        if report.tolerated[(name, kind)] == 0
    ]

    print(
        f"\nhl7v2 oracle: {report.files} files, {report.messages} messages, "
        f"{report.segments} segments, {report.fields} fields, "
        f"{report.values} values compared, {report.path_lookups} path lookups, "
        f"read_msh checked on {report.read_msh_checked} messages"
    )
    print(f"tolerated differences (allow-listed files): {sum(report.tolerated.values())}")
    for (name, kind), count in sorted(report.tolerated.items()):
        print(f"  {name}: {count} x {kind}")
    print(f"python-hl7 cannot parse, our reader parses ({len(report.pyhl7_failed)}):")
    for name, reason in sorted(report.pyhl7_failed.items()):
        print(f"  {name}: {reason}")
    print(f"both readers reject ({len(report.both_rejected)}):")
    for name, reason in sorted(report.both_rejected.items()):
        print(f"  {name}: {reason}")
    print(f"read_msh rejects (stricter MSH-1/MSH-2 rules) ({len(report.read_msh_rejected)}):")
    for name, reason in sorted(report.read_msh_rejected.items()):
        print(f"  {name}: {reason}")

    problems = report.failures + stale
    assert not problems, f"{len(problems)} disagreements:\n" + "\n".join(problems[:50])


def test_allow_list_names_only_known_difference_kinds() -> None:
    """Every allow-list entry names a documented kind of difference."""
    for name, kinds in ALLOWED.items():
        assert kinds, name
        assert kinds <= set(KIND_REASONS), name

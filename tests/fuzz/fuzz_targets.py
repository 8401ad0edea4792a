"""The fuzz targets: each parser that takes input from outside, and the contract it keeps.

A target takes the fuzzer's bytes and returns, or raises AssertionError (or any exception the
contract does not allow), which the fuzzer reports as a crash with the input that caused it.
The contract, for every target: the code under test returns, or raises the error types its
callers catch and turn into an answer (InputError for a message, ConfigError/ConfigErrors for a
configuration file, ValueError where the pipeline or the mapping interpreter catches it), and
holds the round-trip properties stated below. Hangs are caught by the runner's per-input
time limit (fuzz_run.py).

Targets import nothing of pytest, so the runner instruments exactly the engine's modules.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path

from channels.intake.examine import Policy
from channels.intake.message_limits import DEFAULT_LIMITS, MessageLimits
from channels.mllp.ack import parse_ack
from channels.mllp.framing import BadFrame, Frame, MllpDecoder, frame
from channels.mllp.ingest import examine, reject
from core.config_paths import ConfigRoots
from core.errors import CharsetMismatch, ConfigError, ConfigErrors, DecodeError, InputError, ParseError
from core.journal import CONTROL_ID_CHARS, EVENT_YEARS, RECEIVED, REJECTED
from core.settings.loading import read_settings
from transforms.converters import CONVERTERS, DEFAULT_TZ, parse_hl7_datetime, typed_value
from transforms.decode import decode, read_text
from transforms.hl7v2 import (
    DEFAULT_DELIMITERS,
    HL7_NULL,
    SEGMENT_NAME,
    Message,
    read_msh,
    split_batch,
    split_segments,
    unescape,
)
from transforms.mapping.compiler import load_mapping

REPO = Path(__file__).resolve().parents[2]

Target = Callable[[bytes], None]

# --------------------------------------------------------------------------------------------
# MLLP framing
# --------------------------------------------------------------------------------------------

_FRAMING_BYTES = re.compile(rb"[\x0b\x1c]")


def _decode_stream(stream: bytes, limit: int, sizes: list[int]) -> list[Frame | BadFrame]:
    """Every event of a connection that sent `stream` in chunks of `sizes` (cycled), then closed."""
    decoder = MllpDecoder(limit)
    events: list[Frame | BadFrame] = []
    pos, i = 0, 0
    while pos < len(stream):
        size = sizes[i % len(sizes)]
        events += decoder.feed(stream[pos : pos + size])
        pos += size
        i += 1
    return events + decoder.finish()


def framer(data: bytes) -> None:
    """MllpDecoder: never raises; the events do not depend on where the stream was cut; frames of
    payloads without framing bytes come back whole (or as `oversize`, cut at the limit)."""
    if len(data) < 2:
        return
    limit = 1 + data[0] * 4
    stream = data[1:]
    sizes = [1 + b % 17 for b in data[:64]]
    whole = _decode_stream(stream, limit, [len(stream)])
    assert _decode_stream(stream, limit, sizes) == whole
    if len(stream) <= 2048:
        assert _decode_stream(stream, limit, [1]) == whole
    for event in whole:
        assert len(event.payload) <= limit
        if isinstance(event, Frame):
            assert b"\x0b" not in event.payload and b"\x1c" not in event.payload
        else:
            assert event.kind in ("oversize", "truncated", "stray")
            assert event.size >= len(event.payload) and event.reason(limit)
    payloads = _FRAMING_BYTES.split(stream)
    wire = b"".join(frame(p) for p in payloads)
    expected = [Frame(p) if len(p) <= limit else BadFrame("oversize", p[:limit], len(p)) for p in payloads]
    assert _decode_stream(wire, limit, sizes) == expected


# --------------------------------------------------------------------------------------------
# MSH and the intake decision (channels/intake, transforms/decode.py, the ACK)
# --------------------------------------------------------------------------------------------

_CHANNEL_ENCODINGS = ("utf-8", "gb18030", "latin-1", "ascii")
_SMALL_LIMITS = MessageLimits(max_segments=20, max_repetitions=8, max_field_bytes=64)


def intake(data: bytes) -> None:
    """What the MLLP source does with one frame: `read_msh` raises only ParseError; `examine`
    never raises and gives each message a verdict: rejected with a reason, or accepted with a
    control id the journal can store, in a charset the transform stage decodes, with an MSH
    our own reader finds again. Every ACK says the verdict's code."""
    if not data:
        return
    mode, payload = data[0], data[1:]
    policy = Policy(
        channel="fuzz",
        encoding=_CHANNEL_ENCODINGS[mode % 4],
        ack_mode="enhanced" if mode & 4 else "original",
        limits=_SMALL_LIMITS if mode & 8 else DEFAULT_LIMITS,
    )
    with contextlib.suppress(ParseError):
        read_msh(payload)
    verdicts = examine(payload, policy, "fuzz")
    verdicts.append(reject(payload, policy, "frame truncated", "fuzz"))
    assert verdicts
    for verdict in verdicts:
        entry = verdict.entry
        codecs.lookup(verdict.encoding)
        if verdict.ack is not None:
            verdict.ack.encode(verdict.encoding, errors="replace")
            assert parse_ack(verdict.ack).code == entry.ack_code
        if entry.status == REJECTED:
            assert entry.error
            continue
        assert entry.status == RECEIVED and not entry.error
        assert entry.control_id and len(entry.control_id) <= CONTROL_ID_CHARS
        assert entry.event_time is None or entry.event_time.year in EVENT_YEARS
        text = decode(entry.raw, verdict.encoding)
        msh = Message(text).segment("MSH")
        assert msh is not None and msh.field(10).strip() == entry.control_id


_DECLARED = {"utf-8": "UNICODE UTF-8", "gb18030": "GB 18030-2000"}
_MSH18_SAMPLES = ("", "UNICODE UTF-8", "GB 18030-2000", "GBK", "8859/1", "ASCII", "UNICODE UTF-16", "X")


def charset(data: bytes) -> None:
    """Bytes to text at the edge: arbitrary bytes raise only DecodeError; text encoded in a
    charset and declared in MSH-18 reads back as the same text, or is refused as a
    CharsetMismatch when GB18030 bytes are also Chinese UTF-8 (the documented rule)."""
    if not data:
        return
    mode, raw = data[0], data[1:]
    channel = _CHANNEL_ENCODINGS[mode % 4]
    with contextlib.suppress(DecodeError):
        read_text(raw, _MSH18_SAMPLES[(mode >> 2) % len(_MSH18_SAMPLES)], channel)
    text = raw.decode("utf-8", errors="ignore")
    codec = "gb18030" if mode & 1 else "utf-8"
    encoded = text.encode(codec)
    try:
        reading = read_text(encoded, _DECLARED[codec], channel)
    except CharsetMismatch:
        assert codec == "gb18030" and encoded.decode("utf-8")
    else:
        assert reading.text == text and reading.encoding == codec
    reading = read_text(encoded, "", codec)
    assert reading.text == text or (reading.undeclared_utf8 and reading.text == encoded.decode("utf-8"))


# --------------------------------------------------------------------------------------------
# The HL7 reader (transforms/hl7v2.py)
# --------------------------------------------------------------------------------------------

_MAX_FIELDS = 25
_MAX_REPS = 4


def _checked(value: object) -> None:
    assert value is None or value is HL7_NULL or (isinstance(value, str) and value)


def hl7_reader(data: bytes) -> None:
    """The lazy reader on decoded text: `Message` and `split_batch` raise only ValueError (the
    pipeline's answer to an unreadable message); once built, no read raises, every value is
    text, HL7_NULL or None, and a plain value reads back as sent."""
    text = data.decode("utf-8", errors="replace")
    with contextlib.suppress(ValueError):
        split_batch(text)
    try:
        message = Message(text)
    except ValueError:
        return
    d = message.delimiters
    assert len(split_segments(str(message))) == len(message.segments())
    names: set[str] = set()
    for segment in message.segments():
        names.add(segment.name)
        for n in range(min(len(segment), _MAX_FIELDS)):
            raw = segment.field(n)
            assert isinstance(unescape(raw, d), str)
            repetitions = segment.repetitions(n)
            for rep in range(1, min(len(repetitions), _MAX_REPS) + 1):
                _checked(segment.get(n, rep))
                for comp in range(1, 4):
                    _checked(segment.get(n, rep, comp))
                    _checked(segment.get(n, rep, comp, 2))
            plain = n > 2 and raw and raw != '""' and not any(c in raw for c in d[1:5] if c)
            if plain and d.field not in raw:
                assert segment.get(n) == raw
    for name in sorted(names)[:6]:
        if SEGMENT_NAME.fullmatch(name):
            for path in (f"{name}-3", f"{name}[*]-3[*].1", f"{name}[2]-5.2.1"):
                _checked(message.get(path))
                for value in message.values(path):
                    _checked(value)


# --------------------------------------------------------------------------------------------
# Converters (transforms/converters.py)
# --------------------------------------------------------------------------------------------

_CONVERTER_NAMES = sorted(CONVERTERS)
_VALUE_TYPES = ("NM", "CE", "CWE", "DT", "TS", "DTM", "SN", "ST", "TX", "FT", "CX")


def converters(data: bytes) -> None:
    """Every named converter returns a JSON value (no NaN or infinity) or raises ValueError,
    which the mapping interpreter turns into a MappingError; `typed_value` never raises."""
    if not data:
        return
    mode = data[0]
    text = data[1:].decode("utf-8", errors="replace")
    name = _CONVERTER_NAMES[mode % len(_CONVERTER_NAMES)]
    with contextlib.suppress(ValueError):
        json.dumps(CONVERTERS[name](text), allow_nan=False)
    try:
        stamp = parse_hl7_datetime(text, DEFAULT_TZ)
    except ValueError:
        pass
    else:
        assert stamp.tzinfo is not None
    kind = _VALUE_TYPES[mode % len(_VALUE_TYPES)]
    json.dumps(typed_value(text, kind, DEFAULT_DELIMITERS), allow_nan=False)


# --------------------------------------------------------------------------------------------
# Configuration files: routes.yaml (core/settings/loading.py) and mappings (load_mapping)
# --------------------------------------------------------------------------------------------


@cache
def _config_folder() -> Path:
    """A folder shaped like the repository's configuration (its mappings/), written per input:
    the runner's MCH_FUZZ_WORKDIR, else a new temporary folder."""
    folder = Path(os.environ.get("MCH_FUZZ_WORKDIR") or tempfile.mkdtemp(prefix="mch-fuzz-"))
    shutil.copytree(REPO / "mappings", folder / "mappings", dirs_exist_ok=True)
    return folder


def _check_problems(problems: list[ConfigError], file: str, text: bytes) -> None:
    lines = text.count(b"\n") + text.count(b"\r") + 2
    for problem in problems:
        assert isinstance(problem, ConfigError) and problem.file.endswith(Path(file).name)
        assert problem.line is None or 1 <= problem.line <= lines, (problem.line, lines)
        assert str(problem).strip()


def routes_yaml(data: bytes) -> None:
    """routes.yaml as `mch-engine check` and the engine read it: `read_settings` never raises;
    it gives settings, or problems that are ConfigErrors naming the file and a line within it."""
    path = _config_folder() / "routes.yaml"
    path.write_bytes(data)
    loaded = read_settings(path, env={})
    _check_problems(loaded.problems, str(path), data)
    assert (loaded.settings is None) == bool(loaded.problems)


@cache
def _sample_messages() -> tuple[Message, ...]:
    """Messages a fuzzed mapping that compiles is applied to: the shipped samples."""
    files = sorted((REPO / "mappings").glob("*/samples/*.hl7"))[:8]
    raws = [f.read_bytes() for f in files]
    return tuple(Message(read_text(raw, read_msh(raw).charset, "gb18030").text) for raw in raws)


def mapping_yaml(data: bytes) -> None:
    """A mapping file: `load_mapping` compiles it or raises ConfigError(s) at a line of the
    file; a mapping that compiles maps the sample messages or raises what the pipeline
    catches (InputError, ValueError), never anything else."""
    folder = _config_folder()
    path = folder / "mappings" / "his" / "fuzz.yaml"
    path.write_bytes(data)
    try:
        mapping = load_mapping(path, roots=ConfigRoots.of([folder]))
    except ConfigErrors as exc:
        _check_problems(exc.errors, str(path), data)
        return
    except ConfigError as exc:
        _check_problems([exc], str(path), data)
        return
    if mapping.input != "hl7":
        return
    for message in _sample_messages():
        with contextlib.suppress(InputError, ValueError):
            mapping.apply(message)


TARGETS: dict[str, Target] = {
    "framer": framer,
    "intake": intake,
    "charset": charset,
    "hl7_reader": hl7_reader,
    "converters": converters,
    "routes_yaml": routes_yaml,
    "mapping_yaml": mapping_yaml,
}


# --------------------------------------------------------------------------------------------
# Seeds
# --------------------------------------------------------------------------------------------

_CONVERTER_VALUES = (
    "20250310113002+0800", "20250310", "202503101130", "20250310113002.1234", "F", "女", "3.5",
    "1,234", "<0.05", "12", "林晓雯^LIN^XIAOWEN", "11010519491231002x", "12周4日", "10+3",
    "HB^血红蛋白^LN", "1\\S\\2", "",
)  # fmt: skip


def seeds(target: str, conformance: Path) -> Iterator[bytes]:
    """Starting inputs for `target`: the conformance corpus, the shipped routes.yaml and mappings."""
    messages = [p.read_bytes() for p in sorted(conformance.rglob("*.hl7"))]
    if target == "framer":
        for i, message in enumerate(messages):
            yield bytes([255]) + frame(message) + frame(messages[i - 1])
        yield b"\x20junk\x0b\x0bMSH|^~\\&|A\x0bMSH|^~\\&|B\x1c\r\x0b\x0b"
    elif target in ("intake", "charset"):
        for i, message in enumerate(messages):
            yield bytes([i % 256]) + message
    elif target == "hl7_reader":
        yield from messages
    elif target == "converters":
        for i, value in enumerate(_CONVERTER_VALUES):
            for j in range(len(_CONVERTER_NAMES)):
                yield bytes([(j + i * len(_CONVERTER_NAMES)) % 256]) + value.encode()
    elif target == "routes_yaml":
        yield (REPO / "routes.yaml").read_bytes()
        for path in sorted((REPO / "tests").rglob("routes*.yaml")):
            yield path.read_bytes()
    elif target == "mapping_yaml":
        for path in sorted((REPO / "mappings").rglob("*.yaml")):
            yield path.read_bytes()
    else:
        raise KeyError(target)

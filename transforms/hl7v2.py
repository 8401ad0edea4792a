"""A small, lazy HL7 v2 reader.

Why not python-hl7: `hl7.parse` builds the whole tree of containers up front (about 1.2 ms for a
1.6 KB ORU^R01), while the engine reads a handful of values per message. This reader does the
least work that answers the question asked:

- `Message(text)` only splits the text into segment lines and reads the delimiters from MSH;
- a segment's fields are split the first time that segment is read, then kept;
- repetitions, components and sub-components are split only when a value is asked for;
- `read_msh(raw)` reads MSH from the raw bytes, before decoding, so MSH-18 can pick the charset.

Values are addressed with paths such as `PID-3[*].1` (see `parse_path`). Three states are kept
apart: a value, the explicit HL7 null `""` (`HL7_NULL`, "delete this value"), and an empty or
absent value (`None`).

Decoding rule for a path without `.COMP` (or without `.SUB`): the selected text is unescaped only
when it holds no deeper delimiter. A repetition with components (`ORU^R01`) comes back raw, still
escaped, because decoding `\\S\\` to `^` would make it impossible to tell data from structure.
Ask for `.COMP` / `.SUB` to get decoded parts.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Final, NamedTuple

from core.errors import ParseError
from transforms.batch import split_frame

__all__ = [
    "DEFAULT_DELIMITERS",
    "HL7_NULL",
    "SEGMENT_NAME",
    "Delimiters",
    "Message",
    "MshHeader",
    "NullValue",
    "Path",
    "Segment",
    "parse_path",
    "read_msh",
    "split_batch",
    "split_segments",
    "unescape",
]


class Delimiters(NamedTuple):
    """The separators a message declares in MSH-1 and MSH-2."""

    field: str
    component: str
    repetition: str
    escape: str
    subcomponent: str
    truncation: str | None  # MSH-2 5th character (v2.7+), None when not declared


DEFAULT_DELIMITERS: Final = Delimiters("|", "^", "~", "\\", "&", None)
_DEFAULT_ENCODING: Final = "^~\\&"


class NullValue:
    """The explicit HL7 null `""`: the sender says "this value is now empty, delete it".

    There is one instance, `HL7_NULL`; compare with `is`. It is falsy and prints as an empty
    string, so code that does not care about the difference treats it like an empty value.
    """

    __slots__ = ()
    _instance: NullValue | None = None

    def __new__(cls) -> NullValue:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "HL7_NULL"

    def __str__(self) -> str:
        return ""

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> tuple[type[NullValue], tuple[()]]:
        return (NullValue, ())

    def __copy__(self) -> NullValue:
        return self

    def __deepcopy__(self, memo: object) -> NullValue:
        return self


HL7_NULL: Final[NullValue] = NullValue()

# Whitespace (and the UTF-8 byte order mark) allowed before "MSH".
_LEADING: Final = " \t\r\n\x0b\x0c\ufeff"
_LEADING_BYTES: Final = b" \t\r\n\x0b\x0c"
_BOM: Final = b"\xef\xbb\xbf"
# Segments whose field 1 is the field separator itself and field 2 the encoding characters.
_HEADERS: Final = frozenset(("MSH", "FHS", "BHS"))


# --------------------------------------------------------------------------------------------
# Segments and delimiters
# --------------------------------------------------------------------------------------------


def split_segments(text: str) -> list[str]:
    """Split on CR, LF or CRLF in any mix; drop empty and whitespace-only lines.

    Senders and files disagree on the segment terminator, so all three are accepted. Other
    line-break characters (VT, FS, U+2028...) are data, unlike `str.splitlines`.
    """
    if "\n" in text:
        text = text.replace("\r\n", "\r").replace("\n", "\r")
    return [line for line in text.split("\r") if line and not line.isspace()]


def _delimiters(field_sep: str, encoding: str) -> Delimiters:
    """Delimiters from MSH-1 and MSH-2; a missing encoding character falls back to its default."""
    if encoding == _DEFAULT_ENCODING and field_sep == "|":
        return DEFAULT_DELIMITERS
    enc = encoding + _DEFAULT_ENCODING[len(encoding) :] if len(encoding) < 4 else encoding
    return Delimiters(field_sep, enc[0], enc[1], enc[2], enc[3], enc[4] if len(enc) > 4 else None)


def _bad_separator(char: str) -> bool:
    """Letters, digits and whitespace cannot separate fields (they are data)."""
    return char.isalnum() or char.isspace()


def _segment_name(line: str, field_sep: str) -> str:
    i = line.find(field_sep)
    return line if i < 0 else line[:i]


class Segment:
    """One segment line; its fields are split on first access and kept.

    Field numbers follow HL7: field 0 is the segment name, and in MSH (FHS, BHS) field 1 is the
    field separator itself and field 2 the encoding characters, so `MSH-9` is `field(9)`.
    """

    __slots__ = ("_comps", "_delims", "_fields", "_line", "_reps", "name")

    def __init__(self, line: str, delimiters: Delimiters, name: str | None = None) -> None:
        self._line = line
        self._delims = delimiters
        self._fields: list[str] | None = None
        self._comps: dict[tuple[int, int], list[str]] | None = None
        self._reps: dict[int, list[str]] | None = None
        self.name = _segment_name(line, delimiters.field) if name is None else name

    def __repr__(self) -> str:
        return f"Segment({self._line!r})"

    def __str__(self) -> str:
        return self._line

    def _split(self) -> list[str]:
        fs = self._delims.field
        fields = self._line.split(fs)
        if self.name in _HEADERS and len(fields) > 1:
            fields.insert(1, fs)
        self._fields = fields
        return fields

    def field(self, n: int) -> str:
        """Raw (still escaped) text of field n; "" when absent."""
        fields = self._fields if self._fields is not None else self._split()
        return fields[n] if 0 <= n < len(fields) else ""

    def __len__(self) -> int:
        """Number of fields present, counting field 0 (the name)."""
        return len(self._fields if self._fields is not None else self._split())

    def _is_header_field(self, n: int) -> bool:
        return (n == 1 or n == 2) and self.name in _HEADERS

    def repetitions(self, n: int) -> list[str]:
        """Raw repetitions of field n ([] when empty or absent); MSH-1 and MSH-2 are never split."""
        raw = self.field(n)
        if not raw:
            return []
        if self._is_header_field(n):
            return [raw]
        return self._split_reps(n, raw)

    def _split_reps(self, n: int, raw: str) -> list[str]:
        """Field n's raw repetitions, split once and kept: reading each of N repetitions then
        costs the field's length once, not N times (a 50,000-repetition field took 31 s).
        The list is shared; callers must not change it."""
        reps = self._reps
        if reps is None:
            reps = self._reps = {}
        found = reps.get(n)
        if found is None:
            found = reps[n] = raw.split(self._delims.repetition)
        return found

    def raw_fields(self) -> list[str]:
        """The raw fields, split once (field 0 is the name); for compiled mapping reads."""
        return self._fields if self._fields is not None else self._split()

    @property
    def delimiters(self) -> Delimiters:
        return self._delims

    def components(self, n: int, rep: int) -> list[str] | None:
        """The raw components of field n, repetition `rep`, as `value` splits and keeps them;
        None where `value` answers before splitting (an absent or empty field, or MSH-1/2).
        A compiled mapping reads several components of one field from this one list."""
        fields = self._fields if self._fields is not None else self._split()
        if n >= len(fields) or n < 0 or not fields[n] or (0 < n < 3 and self.name in _HEADERS):
            return None
        comps = self._comps
        parts = comps.get((n, rep)) if comps is not None else None
        if parts is None:
            if comps is None:
                comps = self._comps = {}
            raw, d = fields[n], self._delims
            raw = self._repetition(n, raw, rep) or ""
            parts = comps[(n, rep)] = raw.split(d.component) if d.component in raw else [raw]
        return parts

    def _repetition(self, n: int, raw: str, rep: int) -> str | None:
        """Repetition `rep` of field n whose raw text is `raw`; None when there is none."""
        if self._delims.repetition in raw:
            reps = self._split_reps(n, raw)
            return reps[rep - 1] if rep <= len(reps) else None
        return raw if rep == 1 else None

    def get(
        self, n: int, rep: int = 1, comp: int | None = None, sub: int | None = None
    ) -> str | NullValue | None:
        """Decoded value of field n (repetition, component, sub-component, all 1-based).

        None when empty or absent, HL7_NULL when the value is exactly `""`. Without `comp`
        (or `sub`), text that still holds deeper delimiters is returned raw (see module doc).
        """
        if rep < 1 or (comp is not None and (comp < 1 or (sub is not None and sub < 1))):
            raise ValueError("repetition, component and sub-component numbers start at 1")
        if sub is not None and comp is None:
            raise ValueError("a sub-component needs a component")
        return self.value(n, rep, comp, sub)

    def value(
        self, n: int, rep: int = 1, comp: int | None = None, sub: int | None = None
    ) -> str | NullValue | None:
        """`get` for numbers already checked (compiled paths): the same answer, no checks.

        The components of a repetition are split once and kept, because mappings read
        several components of one field (OBX-3.1, .2, .3) and conditions read them again.
        """
        fields = self._fields if self._fields is not None else self._split()
        if n >= len(fields) or n < 0:
            return None
        raw = fields[n]
        if not raw:
            return None
        if 0 < n < 3 and self.name in _HEADERS:
            # MSH-1/MSH-2 are the delimiters themselves: never split, never unescaped.
            return raw if rep == 1 and comp in (None, 1) and sub in (None, 1) else None
        d = self._delims
        if comp is None:
            if d.repetition in raw:
                reps = self._split_reps(n, raw)
                if rep > len(reps):
                    return None
                raw = reps[rep - 1]
            elif rep != 1:
                return None
            if d.component not in raw and d.subcomponent not in raw:
                # The common case (a plain field) without a further call.
                if not raw:
                    return None
                if d.escape in raw:
                    return _decode(raw, d)
                return raw if raw != '""' else HL7_NULL
            return _pick(raw, None, sub, d)
        comps = self._comps
        parts = comps.get((n, rep)) if comps is not None else None
        if parts is None:
            if comps is None:
                comps = self._comps = {}
            raw = self._repetition(n, raw, rep) or ""
            parts = comps[(n, rep)] = raw.split(d.component) if d.component in raw else [raw]
        if comp > len(parts):
            return None
        return _pick_sub(parts[comp - 1], sub, d)


def _pick(raw: str, comp: int | None, sub: int | None, d: Delimiters) -> str | NullValue | None:
    """Select component/sub-component of one raw repetition and decode it."""
    if comp is None:
        if d.component in raw or d.subcomponent in raw:
            return raw
        return _decode(raw, d)
    if d.component in raw:
        parts = raw.split(d.component)
        if comp > len(parts):
            return None
        raw = parts[comp - 1]
    elif comp != 1:
        return None
    return _pick_sub(raw, sub, d)


def _pick_sub(raw: str, sub: int | None, d: Delimiters) -> str | NullValue | None:
    """Sub-component `sub` of one component (None: the whole component), decoded."""
    if sub is None:
        return raw if d.subcomponent in raw else _decode(raw, d)
    if d.subcomponent in raw:
        parts = raw.split(d.subcomponent)
        if sub > len(parts):
            return None
        raw = parts[sub - 1]
    elif sub != 1:
        return None
    return _decode(raw, d)


def _decode(raw: str, d: Delimiters) -> str | NullValue | None:
    """Empty is None, also when only formatting escapes (`\\H\\`, `\\N\\`) made it non-empty, as the
    mapping getters read it: a required field of nothing but escapes is empty."""
    if not raw:
        return None
    if raw == '""':
        return HL7_NULL
    if d.escape in raw:
        return unescape(raw, d) or None
    return raw


# --------------------------------------------------------------------------------------------
# Escape sequences
# --------------------------------------------------------------------------------------------

_HEX = re.compile(r"(?:[0-9A-Fa-f]{2})+")
_CHARSET_SWITCH = re.compile(r"C[0-9A-Fa-f]{4}|M[0-9A-Fa-f]{4}(?:[0-9A-Fa-f]{2})?")
_FORMAT = re.compile(r"\.(sp|in|ti|sk)\s*([+-]?[0-9]{1,3})?")
_MAX_REPEAT: Final = 100  # cap for \.sp n\ and \.sk n\ so a message cannot blow up memory


@lru_cache(maxsize=64)
def _simple_escapes(d: Delimiters) -> dict[str, str]:
    table = {
        "F": d.field,
        "S": d.component,
        "T": d.subcomponent,
        "R": d.repetition,
        "E": d.escape,
        "H": "",  # start highlighting: no plain-text equivalent
        "N": "",  # normal text (end highlighting)
        ".br": "\n",
        ".ce": "\n",  # "end line and centre the next one": keep the line break only
        ".fi": "",  # fill / no-fill mode: layout only
        ".nf": "",
    }
    if d.truncation is not None:
        table["P"] = d.truncation
    return table


def _escape_value(seq: str, d: Delimiters) -> str | None:
    """Replacement text for the escape sequence body `seq`, or None if it is not one."""
    simple = _simple_escapes(d).get(seq)
    if simple is not None:
        return simple
    head = seq[:1]
    if head == "X":
        digits = seq[1:]
        if not _HEX.fullmatch(digits):
            return None
        data = bytes.fromhex(digits)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data.decode("latin-1")
    if head == "Z":
        return "" if len(seq) > 1 else None  # locally defined: meaning unknown here, dropped
    if head in ("C", "M"):
        # Character set switches: the text was already decoded as a whole, nothing to switch.
        return "" if _CHARSET_SWITCH.fullmatch(seq) else None
    if head == ".":
        m = _FORMAT.fullmatch(seq)
        if m is None:
            return None
        cmd, number = m.group(1), m.group(2)
        count = min(max(int(number), 1), _MAX_REPEAT) if number else 1
        if cmd == "sp":
            return "\n" * count
        if cmd == "sk":
            return " " * count
        return ""  # .in / .ti: indentation is dropped
    return None


def unescape(text: str, delims: Delimiters) -> str:
    r"""Decode HL7 escape sequences; anything not understood stays as literal text.

    `\F\ \S\ \T\ \R\ \E\` give the delimiters back, `\P\` the truncation character (only if
    MSH-2 declares one), `\Xhh..\` hex bytes (UTF-8, else latin-1), `\.br\` and `\.ce\` a line
    break, `\.sp n\` n line breaks, `\.sk n\` n spaces. Dropped: `\H\ \N\` (highlighting),
    `\.fi\ \.nf\ \.in n\ \.ti n\` (layout), `\Zxx\` (locally defined), `\Cxxyy\ \Mxxyy[zz]\`
    (charset switches: the text is already decoded). An unterminated or unknown sequence keeps
    its escape character as text and decoding resumes right after it, so a stray `\` in a
    Windows path survives. Never raises.
    """
    esc = delims.escape
    if not esc or esc not in text:
        return text
    out: list[str] = []
    i = 0
    while True:
        start = text.find(esc, i)
        if start < 0:
            out.append(text[i:])
            break
        end = text.find(esc, start + 1)
        if end < 0:
            out.append(text[i:])
            break
        out.append(text[i:start])
        value = _escape_value(text[start + 1 : end], delims)
        if value is None:
            out.append(esc)
            i = start + 1
        else:
            out.append(value)
            i = end + 1
    return "".join(out)


# --------------------------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------------------------


class Path(NamedTuple):
    """A compiled path `SEG[occ]-FIELD[rep].COMP.SUB`; None in occurrence/repetition means `*`."""

    text: str
    segment: str
    occurrence: int | None
    field: int
    repetition: int | None
    component: int | None
    subcomponent: int | None

    @property
    def is_multi(self) -> bool:
        """True when the path has a `[*]` and may select several values."""
        return self.occurrence is None or self.repetition is None


_PATH = re.compile(
    r"(?P<seg>[^\[\]\-.]*)(?:\[(?P<occ>[^\]]*)\])?"
    r"-(?P<field>[^\[\].]*)(?:\[(?P<rep>[^\]]*)\])?"
    r"(?:\.(?P<comp>[^.]*))?(?:\.(?P<sub>[^.]*))?"
)
SEGMENT_NAME = re.compile(r"[A-Z][A-Z0-9]{1,2}")  # HL7 segment ids start with a letter
_NUMBER = re.compile(r"[1-9][0-9]{0,4}")


def _number(path: str, what: str, text: str, star: bool) -> int | None:
    if star and text == "*":
        return None
    if _NUMBER.fullmatch(text):
        return int(text)
    allowed = "a number from 1 or *" if star else "a number from 1"
    raise ValueError(f"bad HL7 path {path!r}: {what} {text!r} must be {allowed}")


@lru_cache(maxsize=4096)
def parse_path(path: str) -> Path:
    """Compile `SEG[occ]-FIELD[rep].COMP.SUB` (e.g. `PID-3[*].1`, `OBX[2]-5`); cached.

    Raises ValueError naming the part that is wrong, because paths come from mapping files
    written by people.
    """
    if not isinstance(path, str):
        raise ValueError(f"bad HL7 path {path!r}: must be text like 'PID-3[*].1'")
    m = _PATH.fullmatch(path.strip())
    if m is None:
        if "-" not in path:
            reason = "missing '-FIELD' (expected SEG[occ]-FIELD[rep].COMP.SUB, e.g. PID-3[*].1)"
        elif path.count(".") > 2:
            reason = "too many '.' parts (at most .COMP.SUB)"
        else:
            reason = "expected SEG[occ]-FIELD[rep].COMP.SUB, e.g. PID-3[*].1 or OBX[2]-5.1"
        raise ValueError(f"bad HL7 path {path!r}: {reason}")
    seg = m.group("seg")
    if not SEGMENT_NAME.fullmatch(seg):
        raise ValueError(
            f"bad HL7 path {path!r}: segment {seg!r} must be 2-3 upper-case letters/digits, "
            "starting with a letter"
        )
    occ_text, rep_text = m.group("occ"), m.group("rep")
    comp_text, sub_text = m.group("comp"), m.group("sub")
    occ = 1 if occ_text is None else _number(path, "segment occurrence", occ_text, True)
    field = _number(path, "field", m.group("field"), False)
    rep = 1 if rep_text is None else _number(path, "repetition", rep_text, True)
    comp = None if comp_text is None else _number(path, "component", comp_text, False)
    sub = None if sub_text is None else _number(path, "sub-component", sub_text, False)
    assert field is not None
    return Path(path, seg, occ, field, rep, comp, sub)


# --------------------------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------------------------


class Message:
    """One HL7 v2 message, read lazily: construction only splits lines and reads MSH-1/MSH-2."""

    __slots__ = ("_index", "_lines", "_segs", "delimiters")

    def __init__(self, text: str) -> None:
        text = text.lstrip(_LEADING)
        if not text.startswith("MSH"):
            head = text[:3]
            hint = "; split batch files first (split_batch)" if head in ("FHS", "BHS") else ""
            raise ValueError(f"not an HL7 v2 message: text starts with {text[:12]!r}, not 'MSH'{hint}")
        lines = split_segments(text)
        first = lines[0]
        if len(first) < 4:
            raise ValueError("MSH is too short to declare delimiters: no field separator")
        fs = first[3]
        if _bad_separator(fs):
            raise ValueError(
                f"MSH-1 field separator {fs!r} is a letter, digit or whitespace, not a delimiter"
            )
        end = first.find(fs, 4)
        self.delimiters: Delimiters = _delimiters(fs, first[4:] if end < 0 else first[4:end])
        self._lines = lines
        self._index: dict[str, list[int]] | None = None
        self._segs: list[Segment | None] = []

    def __repr__(self) -> str:
        return f"<Message {len(self._lines)} segments>"

    def __str__(self) -> str:
        return "\r".join(self._lines)

    def _build_index(self) -> dict[str, list[int]]:
        fs = self.delimiters.field
        index: dict[str, list[int]] = {}
        for i, line in enumerate(self._lines):
            name = line.partition(fs)[0]
            if name in index:
                index[name].append(i)
            else:
                index[name] = [i]
        self._segs = [None] * len(self._lines)
        self._index = index
        return index

    def _segment_at(self, i: int, name: str | None = None) -> Segment:
        seg = self._segs[i]
        if seg is None:
            seg = self._segs[i] = Segment(self._lines[i], self.delimiters, name)
        return seg

    def segments(self, name: str | None = None) -> list[Segment]:
        """Segments in message order, all of them or those named `name`."""
        index = self._index if self._index is not None else self._build_index()
        if name is None:
            return [self._segment_at(i) for i in range(len(self._lines))]
        return [self._segment_at(i, name) for i in index.get(name, ())]

    def segment(self, name: str, occurrence: int = 1) -> Segment | None:
        """The n-th (1-based) segment named `name`, or None."""
        if occurrence < 1:
            raise ValueError("segment occurrences start at 1")
        index = self._index if self._index is not None else self._build_index()
        bucket = index.get(name)
        if bucket is None or occurrence > len(bucket):
            return None
        return self._segment_at(bucket[occurrence - 1], name)

    def get(self, path: str) -> str | NullValue | None:
        """First value at `path` (decoded); None when empty or absent, HL7_NULL for `""`."""
        p = parse_path(path)
        if p.occurrence is not None and p.repetition is not None:
            seg = self.segment(p.segment, p.occurrence)
            if seg is None:
                return None
            return seg.get(p.field, p.repetition, p.component, p.subcomponent)
        found = self.values(path)
        return found[0] if found else None

    def values(self, path: str) -> list[str | NullValue | None]:
        """Every value `path` selects, in message order.

        One entry per selected segment and repetition (None for an empty one), so values stay
        aligned with segments; a `[*]` repetition over an empty field selects nothing.
        """
        p = parse_path(path)
        if p.occurrence is None:
            index = self._index if self._index is not None else self._build_index()
            segs = [self._segment_at(i, p.segment) for i in index.get(p.segment, ())]
        else:
            one = self.segment(p.segment, p.occurrence)
            segs = [] if one is None else [one]
        field, rep, comp, sub = p.field, p.repetition, p.component, p.subcomponent
        if rep is not None:
            return [seg.get(field, rep, comp, sub) for seg in segs]
        out: list[str | NullValue | None] = []
        d = self.delimiters
        for seg in segs:
            if seg._is_header_field(field):
                out.append(seg.get(field, 1, comp, sub))
            else:
                out.extend(_pick(raw, comp, sub, d) for raw in seg.repetitions(field))
        return out

    def __getitem__(self, path: str) -> str | None:
        """Like `get`, with the HL7 null turned into "" (for code that only wants text)."""
        value = self.get(path)
        if value is HL7_NULL:
            return ""
        return value  # type: ignore[return-value]


def split_batch(text: str) -> list[str]:
    """Texts of the messages in a batch file (FHS/BHS ... BTS/FTS), envelope segments dropped.

    A plain message comes back as a one-item list, so callers can always loop. The rules are the
    engine's one splitter's (`transforms.batch`): what it refuses raises ValueError here, such as
    a segment that would land in the wrong message or a second MSH outside a batch.
    """
    raw = text.encode("utf-8", "surrogatepass")
    try:
        parts = split_frame(raw)
    except ParseError as exc:
        raise ValueError(str(exc)) from exc
    if parts and parts[0] is raw:
        return ["\r".join(split_segments(text.lstrip(_LEADING)))]
    return [part.decode("utf-8", "surrogatepass").rstrip("\r") for part in parts]


# --------------------------------------------------------------------------------------------
# Reading MSH from raw bytes
# --------------------------------------------------------------------------------------------


class MshHeader(NamedTuple):
    """MSH fields the engine needs, raw (escapes kept), decoded as `read_msh` was told."""

    field_sep: str  # MSH-1
    encoding_chars: str  # MSH-2
    sending_app: str  # MSH-3
    sending_facility: str  # MSH-4
    receiving_app: str  # MSH-5
    receiving_facility: str  # MSH-6
    timestamp: str  # MSH-7
    message_type: str  # MSH-9, raw (e.g. "ORU^R01^ORU_R01")
    control_id: str  # MSH-10
    processing_id: str  # MSH-11
    version: str  # MSH-12, first component
    accept_ack: str  # MSH-15
    app_ack: str  # MSH-16
    charset: str  # MSH-18, first repetition
    ascii_line: bool = True  # the whole MSH line is ASCII: no charset can move its delimiters


def _ascii_delimiter(code: int) -> bool:
    """Printable ASCII punctuation: the only bytes that can split fields before decoding."""
    return 0x21 <= code <= 0x7E and not (0x30 <= code <= 0x39 or 0x41 <= code <= 0x5A or 0x61 <= code <= 0x7A)


_MSH_DELIMITERS: dict[tuple[str, str], Delimiters] = {}
"""MSH-1 and MSH-2 pairs already checked: a sender uses one pair for all its messages."""


def _msh_delimiters(fs: str, enc: str) -> Delimiters:
    """Check MSH-2 (MSH-1 is checked by the caller) and remember the pair when it is good."""
    for ch in enc:
        if not _ascii_delimiter(ord(ch)):
            raise ParseError(
                f"encoding character {ch!r} in MSH-2 {enc!r} is not ASCII punctuation",
                field=2,
                code="102",
            )
    if len(enc) > 5:
        raise ParseError(
            f"MSH-2 {enc!r} has {len(enc)} encoding characters, at most 5 allowed",
            field=2,
            code="102",
        )
    if len(enc) < 2:
        # Fewer than the component and repetition separators: the fields cannot be read as sent.
        what = "is empty" if not enc else f"{enc!r} declares only one encoding character"
        raise ParseError(
            f"MSH-2 {what}; at least ^~ are needed (the standard asks for ^~\\&)", field=2, code="102"
        )
    if len(set(enc)) != len(enc):
        raise ParseError(f"MSH-2 {enc!r} repeats an encoding character", field=2, code="102")
    d = _delimiters(fs, enc)
    if len(_MSH_DELIMITERS) < 256:
        _MSH_DELIMITERS[(fs, enc)] = d
    return d


def read_msh(raw: bytes, encoding: str = "latin-1") -> MshHeader:
    """Read MSH from raw bytes; raise ParseError if unreadable.

    Only the first line is looked at. Before the charset is known, fields are decoded as
    latin-1, so no byte sequence can fail and MSH-18 can be read; once the payload decoded
    in its charset, read again with it (`encoding`) to get non-ASCII fields (a Chinese MSH-4
    or MSH-10) as the sender wrote them: splitting decoded text also keeps a GBK trail byte
    such as 0x7C from passing for a delimiter. Required fields are the caller's decision; this only
    rejects what makes MSH unreadable: no MSH, no or a bad field separator, bad encoding
    characters (letters, digits, whitespace, non-ASCII, repeated, or more than five).
    """
    data = raw.lstrip(_LEADING_BYTES)
    if data.startswith(_BOM):
        data = data[3:].lstrip(_LEADING_BYTES)
    if data[:3] != b"MSH":
        if not data:
            raise ParseError("empty message: no MSH segment", code="100")
        head = data[:3].decode("latin-1")
        hint = "; split batch files into messages first" if head in ("FHS", "BHS") else ""
        raise ParseError(f"message starts with {data[:12]!r}, not MSH{hint}", code="100")
    cr = data.find(b"\r")
    lf = data.find(b"\n", 0, cr) if cr >= 0 else data.find(b"\n")
    end = lf if lf >= 0 else (cr if cr >= 0 else len(data))
    if end < 4:
        raise ParseError("MSH has no field separator", field=1, code="101")
    fs_code = data[3]
    if not _ascii_delimiter(fs_code):
        raise ParseError(
            f"field separator {data[3:4]!r} is not printable ASCII punctuation",
            field=1,
            code="102",
        )
    fs = chr(fs_code)
    line = data[:end]
    fields = (line.decode("latin-1") if line.isascii() else line.decode(encoding)).split(fs)
    enc = fields[1] if len(fields) > 1 else ""
    d = _MSH_DELIMITERS.get((fs, enc)) or _msh_delimiters(fs, enc)
    n = len(fields)
    # fields[k] is MSH-(k+1) for k >= 1, because MSH-1 is the separator between "MSH" and MSH-2.
    return MshHeader(
        d.field,
        enc,
        fields[2] if n > 2 else "",
        fields[3] if n > 3 else "",
        fields[4] if n > 4 else "",
        fields[5] if n > 5 else "",
        fields[6] if n > 6 else "",
        fields[8] if n > 8 else "",
        fields[9] if n > 9 else "",
        fields[10] if n > 10 else "",
        fields[11].split(d.component, 1)[0] if n > 11 else "",
        fields[14] if n > 14 else "",
        fields[15] if n > 15 else "",
        fields[17].split(d.repetition, 1)[0] if n > 17 else "",
        line.isascii(),
    )

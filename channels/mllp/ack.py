"""HL7 v2 acknowledgements, built from the MSH of the message they answer.

MSH-3/4 and MSH-5/6 swap, the version (MSH-12), encoding characters (MSH-2) and
charset (MSH-18) are the sender's own, MSA-2 echoes MSH-10. A rejection carries an
ERR segment in both the v2.5+ shape (ERR-2 location, ERR-3 code, ERR-4 severity,
ERR-8 text) and, for older versions, the v2.3/2.4 ERR-1 shape, so either kind of
sender can read why.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from datetime import datetime

from transforms.hl7v2 import MshHeader

# HL7 table 0357 texts for the codes the engine uses.
ERROR_TEXT = {
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "103": "Table value not found",
    "200": "Unsupported message type",
    "207": "Application internal error",
}

_counter = itertools.count(1)


@dataclass(frozen=True, slots=True)
class AckInfo:
    """What an ACK says, for the journal and for `mch-engine send`."""

    code: str  # AA AE AR CA CE CR
    control_id: str
    text: str = ""


def ack_code(accepted: bool, msh: MshHeader | None, mode: str) -> str | None:
    """MSA-1 for this message, or None when enhanced mode says not to answer.

    Original mode always answers AA/AR. Enhanced mode answers CA/CR when MSH-15
    asks for an accept acknowledgement (AL, or ER on error, SU on success).
    """
    if mode != "enhanced" or msh is None or not msh.accept_ack:
        return "AA" if accepted else "AR"
    wanted = msh.accept_ack.upper()
    if wanted == "NE" or (wanted == "ER" and accepted) or (wanted == "SU" and not accepted):
        return None
    return "CA" if accepted else "CR"


def build_ack(
    msh: MshHeader | None,
    code: str,
    *,
    text: str = "",
    error_code: str = "207",
    error_location: str = "",
    now: datetime | None = None,
) -> str:
    """The ACK message as text with CR segment ends (framing is the caller's job)."""
    fs = msh.field_sep if msh else "|"
    enc = msh.encoding_chars if msh and msh.encoding_chars else "^~\\&"
    comp = enc[0] if enc else "^"
    version = (msh.version if msh else "") or "2.5"
    stamp = now.strftime("%Y%m%d%H%M%S") if now else _local_stamp()
    trigger = _trigger(msh, comp)
    control = msh.control_id if msh else ""
    msh_fields = [
        "MSH",
        enc,
        msh.receiving_app if msh else "MCHENGINE",
        msh.receiving_facility if msh else "",
        msh.sending_app if msh else "",
        msh.sending_facility if msh else "",
        stamp,
        "",
        f"ACK{comp}{trigger}{comp}ACK" if trigger else "ACK",
        f"ACK{stamp}{next(_counter):06d}",
        (msh.processing_id if msh else "") or "P",
        version,
    ]
    if msh and msh.charset:
        msh_fields += ["", "", "", "", "", msh.charset]
    segments = [fs.join(msh_fields)]
    msa = ["MSA", code, control]
    if text:
        msa.append(_clean(text, fs, enc))
    segments.append(fs.join(msa))
    if code[1] in "ER":
        segments.append(_err(fs, comp, enc, version, error_code, error_location, text))
    return "\r".join(segments) + "\r"


_stamp_cache: tuple[int, str] = (-1, "")


def _local_stamp() -> str:
    """MSH-7 of an ACK, local time to the second; formatted once per second, not per ACK."""
    global _stamp_cache
    second = int(time.time())
    cached_second, text = _stamp_cache
    if second != cached_second:
        text = time.strftime("%Y%m%d%H%M%S", time.localtime(second))
        _stamp_cache = (second, text)
    return text


def parse_ack(text: str) -> AckInfo:
    """Read MSA-1, MSA-2 and the best human text (MSA-3, else ERR-8, else ERR-1) of an ACK."""
    code = control = msg = ""
    err_text = ""
    for seg in text.replace("\n", "\r").split("\r"):
        if seg.startswith("MSA") and len(seg) > 3:
            parts = seg.split(seg[3])
            code = parts[1] if len(parts) > 1 else ""
            control = parts[2] if len(parts) > 2 else ""
            msg = parts[3] if len(parts) > 3 else ""
        elif seg.startswith("ERR") and len(seg) > 3 and not err_text:
            parts = seg.split(seg[3])
            err_text = parts[8] if len(parts) > 8 and parts[8] else (parts[1] if len(parts) > 1 else "")
    return AckInfo(code=code, control_id=control, text=msg or err_text)


def _trigger(msh: MshHeader | None, comp: str) -> str:
    if msh is None or not msh.message_type:
        return ""
    parts = msh.message_type.split(comp)
    return parts[1] if len(parts) > 1 else ""


def _err(fs: str, comp: str, enc: str, version: str, code: str, location: str, text: str) -> str:
    """ERR with ERR-1 for v2.3/2.4 readers and ERR-2/3/4/8 for v2.5 and later."""
    sub = enc[3] if len(enc) > 3 else "&"
    name = ERROR_TEXT.get(code, "Application internal error")
    loc = location.split("-") if location else ["MSH"]
    seg_name = loc[0]
    field_no = loc[1] if len(loc) > 1 else ""
    clean = _clean(text, fs, enc)
    if _older_than_25(version):
        err1 = comp.join([seg_name, "1", field_no, f"{code}{sub}{_clean(name, fs, enc)}"])
        return fs.join(["ERR", err1])
    erl = comp.join([seg_name, "1", field_no]) if field_no else seg_name
    return fs.join(["ERR", "", erl, comp.join([code, name, "HL70357"]), "E", "", "", "", clean])


def _older_than_25(version: str) -> bool:
    try:
        major, minor = (int(x) for x in version.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) < (2, 5)


def _clean(text: str, fs: str, enc: str) -> str:
    """Keep delimiters and line breaks out of free text in an ACK."""
    for ch in {fs, *enc, "\r", "\n"}:
        text = text.replace(ch, " ")
    return text[:400]


def wrap_batch(acks: list[str], batch_payload_head: bytes) -> str:
    """Answer an FHS/BHS batch with one ACK per message inside BHS/BTS (and FHS/FTS)."""
    head = batch_payload_head.lstrip(b"\xef\xbb\xbf \t\r\n")
    fs = chr(head[3]) if len(head) > 3 else "|"
    enc = "^~\\&"
    stamp = _local_stamp()
    body = "".join(acks)
    bhs = fs.join(["BHS", enc, "MCHENGINE", "", "", "", stamp])
    out = f"{bhs}\r{body}BTS{fs}{len(acks)}\r"
    if head.startswith(b"FHS"):
        fhs = fs.join(["FHS", enc, "MCHENGINE", "", "", "", stamp])
        out = f"{fhs}\r{out}FTS{fs}1\r"
    return out


def parse_acks(text: str) -> list[AckInfo]:
    """Every acknowledgement in a response (one, or several for a batch)."""
    chunks = text.replace("\n", "\r").split("\rMSH")
    if len(chunks) == 1:
        return [parse_ack(text)] if "MSA" in text else []
    return [parse_ack("MSH" + c if i else c) for i, c in enumerate(chunks) if "MSA" in c]

"""`mch-engine send`: push HL7 files to an MLLP listener and report every ACK.

A file may hold one message, several (each starting at a line beginning with MSH),
or one FHS/BHS batch (sent as one frame). Line ends are sent as CR, as MLLP
senders do. With `--encoding`, a file that reads as UTF-8 text is sent in that
charset instead (so a UTF-8 sample can play a GB18030 sender); a file already in
another charset is sent byte for byte.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import ssl
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from channels.mllp.ack import parse_acks
from channels.mllp.client import send_all
from channels.mllp.tls import client_context
from core import i18n
from core.i18n import t

_MSH_START = re.compile(rb"(?:^|\r)(?=MSH)")
GIVE_UP_AFTER = 3  # connection attempts failing in a row: nothing is listening there


_TEXT: dict[str, tuple[str, str]] = {
    "send_tls_unusable": (
        "TLS 证书或密钥无法读取（{error}）：检查 --tls-ca、--tls-cert、--tls-key",
        "TLS certificate or key cannot be used ({error}): check --tls-ca, --tls-cert, --tls-key",
    ),
}
i18n.register(_TEXT)


def tls_for_send(
    use_tls: bool, ca: str | None, certificate: str | None, key: str | None
) -> ssl.SSLContext | None:
    """The context `send --tls…` asked for (None: plain MLLP); raises ValueError with the reason."""
    if not (use_tls or ca or certificate):
        return None
    try:
        return client_context(ca, certificate, key)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(getattr(exc, "strerror", None) or str(exc)) from None


@dataclass(frozen=True, slots=True)
class Outgoing:
    where: str  # file#n, for the report
    payload: bytes
    encoding: str  # to read the answer


def messages_in(path: Path, wire_encoding: str | None) -> list[Outgoing]:
    raw = path.read_bytes()
    text_encoding = "utf-8"
    if wire_encoding:
        try:
            raw = raw.decode("utf-8").encode(wire_encoding)
            text_encoding = wire_encoding
        except (UnicodeDecodeError, UnicodeEncodeError):
            text_encoding = wire_encoding
    raw = raw.replace(b"\r\n", b"\r").replace(b"\n", b"\r").lstrip(b"\xef\xbb\xbf")
    stripped = raw.strip(b"\r ")
    if stripped[:3] in (b"FHS", b"BHS"):
        return [Outgoing(f"{path.name}#1", stripped + b"\r", text_encoding)]
    parts = [p.strip(b"\r") for p in _MSH_START.split(raw)]
    bodies = [p + b"\r" for p in parts if p.startswith(b"MSH")]
    return [Outgoing(f"{path.name}#{i}", b, text_encoding) for i, b in enumerate(bodies, 1)]


def with_unique_ids(items: list[Outgoing], repeat: int) -> list[Outgoing]:
    """Each repetition gets its own MSH-10 (suffix -RUN-N), so none is a duplicate,
    not even of an earlier `--repeat` run."""
    if repeat <= 1:
        return items
    run = secrets.token_hex(3)
    out = []
    for n in range(1, repeat + 1):
        suffix = f"-{run}-{n}".encode()
        for item in items:
            payload = _suffix_control_id(item.payload, suffix)
            out.append(Outgoing(f"{item.where}@{n}", payload, item.encoding))
    return out


def _suffix_control_id(payload: bytes, suffix: bytes) -> bytes:
    sep = payload[3:4]
    first, _, rest = payload.partition(b"\r")
    fields = first.split(sep)
    if len(fields) > 9:
        fields[9] = fields[9] + suffix
    return sep.join(fields) + b"\r" + rest


def run_send(
    files: list[str],
    host: str,
    port: int,
    *,
    encoding: str | None,
    concurrency: int,
    repeat: int,
    quiet: bool,
    timeout: float,
    tls: ssl.SSLContext | None = None,
    server_name: str | None = None,
) -> int:
    items: list[Outgoing] = []
    for name in files:
        path = Path(name)
        try:
            found = messages_in(path, encoding)
        except OSError as exc:
            print(t("cannot_read", file=name, error=exc.strerror))
            return 2
        if not found:
            print(t("no_messages_in", file=name))
            return 2
        items += found
    items = with_unique_ids(items, repeat)
    started = time.perf_counter()
    results = asyncio.run(
        send_all(
            host,
            port,
            [i.payload for i in items],
            concurrency=concurrency,
            timeout=timeout,
            give_up_after=GIVE_UP_AFTER,
            tls=tls,
            server_name=server_name,
        )
    )
    elapsed = time.perf_counter() - started
    ok = bad = 0
    for res in results:
        item = items[res.index]
        if res.refused:
            bad += 1
            print(t("send_refused", where=item.where, host=host, port=port, error=res.error))
            continue
        if res.ack is None:
            bad += 1
            print(t("send_no_answer", where=item.where, error=res.error))
            continue
        acks = parse_acks(res.ack.decode(item.encoding, errors="replace"))
        good = bool(acks) and all(a.code in ("AA", "CA") for a in acks)
        ok, bad = (ok + 1, bad) if good else (ok, bad + 1)
        if not quiet or not good:
            for a in acks or [None]:
                code = a.code if a else "?"
                control = a.control_id if a else ""
                text = a.text if a else res.ack[:80].decode("latin-1")
                print(t("send_line", where=item.where, code=code, control=control, text=text))
    if len(results) < len(items):
        print(t("send_gave_up", n=GIVE_UP_AFTER, left=len(items) - len(results)))
        return 1
    latencies = sorted(r.seconds * 1000 for r in results)
    if len(items) > 1 or quiet:
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else 0.0
        print(
            t(
                "send_summary",
                n=len(items),
                ok=ok,
                bad=bad,
                secs=elapsed,
                rate=len(items) / elapsed if elapsed else 0.0,
                p50=statistics.median(latencies) if latencies else 0.0,
                p99=p99,
            )
        )
    return 0 if bad == 0 else 1

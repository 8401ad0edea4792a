"""What `mch-engine run` prints once it is up: its listeners with host, and the journal,
record stores and bus it uses, passwords masked, so the on-call sees which database a
running engine writes to without reading routes.yaml and the environment."""

from __future__ import annotations

from typing import Any

from core import i18n
from core.masking import masked_url

_TEXT: dict[str, tuple[str, str]] = {
    "run_banner_journal": ("日志库：{url}", "journal: {url}"),
    "run_banner_store": ("记录库 {name}：{url}", "record store {name}: {url}"),
    "run_banner_forward": ("转发 {name}：{target}", "forwards {name}: {target}"),
    "run_banner_bus": ("消息总线：{url}", "bus: {url}"),
    "run_banner_http": (
        "HTTP：http://{address}/status 和 /healthz",
        "HTTP: http://{address}/status and /healthz",
    ),
}
i18n.register(_TEXT)


def listeners(runtime: Any) -> str:
    """`hospital → 127.0.0.1:2575, lis_gbk → 127.0.0.1:2576` (or `-` without ingest)."""
    places = ((s.name, _where(s)) for s in runtime.sources)
    return ", ".join(f"{name} → {where}" for name, where in places if where) or "-"


def _where(source: Any) -> str | None:
    """A listener's address, or where a source that does not listen reads (a directory)."""
    if getattr(source, "port", None):
        return _address(source.config.host, source.port)
    location = getattr(source, "location", None)
    return str(location) if location else None


def backend_lines(runtime: Any, http_port: int | None = None) -> list[str]:
    eng = runtime.settings.engine
    lines = [i18n.t("run_banner_journal", url=masked_url(eng.database))]
    for name, d in runtime.settings.destinations.items():
        if d.target:  # a destination that forwards: where to, secrets hidden
            lines.append(i18n.t("run_banner_forward", name=name, target=d.target))
            continue
        url = d.database_url
        if url is None:
            continue  # a destination that stores nothing
        lines.append(i18n.t("run_banner_store", name=name, url=masked_url(url)))
    lines.append(i18n.t("run_banner_bus", url=masked_url(eng.broker)))
    if eng.http is not None and http_port is not None:
        lines.append(i18n.t("run_banner_http", address=_address(eng.http.host_port[0], http_port)))
    if getattr(runtime, "leadership", None) is not None and not runtime.leading:
        lines.append(i18n.t("lead_waiting", name=eng.leadership.name))
    return lines


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

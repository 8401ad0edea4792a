"""Operator-facing CLI text in Simplified Chinese (default) or English (`--lang en`)."""

from __future__ import annotations

_TEXT: dict[str, tuple[str, str]] = {
    # key: (zh, en)
    "check_ok": (
        "{file}: 配置正确（{channels} 个通道，{routes} 条路由，{destinations} 个目的地）",
        "{file}: OK ({channels} channels, {routes} routes, {destinations} destinations)",
    ),
    "send_line": (
        "{where}  {code}  控制号={control}  {text}",
        "{where}  {code}  control-id={control}  {text}",
    ),
    "send_no_answer": ("{where}  无应答：{error}", "{where}  no answer: {error}"),
    "send_summary": (
        "共发送 {n} 条，{ok} 条被接受（AA/CA），{bad} 条未被接受；"
        "用时 {secs:.2f} 秒，{rate:.0f} 条/秒，应答延迟 p50 {p50:.2f} ms，p99 {p99:.2f} ms",
        "sent {n}, {ok} accepted (AA/CA), {bad} not accepted; {secs:.2f} s, {rate:.0f} msg/s, "
        "ACK latency p50 {p50:.2f} ms, p99 {p99:.2f} ms",
    ),
    "no_messages_in": (
        "{file}: 文件中没有 HL7 消息（应以 MSH 或 FHS/BHS 开头）",
        "{file}: no HL7 message in the file (expected MSH or FHS/BHS)",
    ),
    "cannot_read": ("无法读取 {file}：{error}", "cannot read {file}: {error}"),
    "bad_address": (
        "--to 应为 主机:端口，例如 127.0.0.1:2575",
        "--to must be HOST:PORT, e.g. 127.0.0.1:2575",
    ),
    "bad_partitions": (
        "--partitions 应为分区号列表，例如 0,1 或 0-3（收到 {value!r}）",
        "--partitions must list partition numbers, e.g. 0,1 or 0-3 (got {value!r})",
    ),
    "bad_shard": (
        "--shard 应为 序号/总数，例如 0/2（收到 {value!r}）",
        "--shard must be INDEX/COUNT, e.g. 0/2 (got {value!r})",
    ),
    "engine_running": (
        "引擎已启动：{channels}。按 Ctrl+C 停止。",
        "engine running: {channels}. Press Ctrl+C to stop.",
    ),
    "engine_stopping": ("正在停止引擎…", "stopping the engine…"),
    "stop_timeout": (
        "{seconds:.0f} 秒内未能完成停止；未完成的消息已在日志中，下次启动时会重新处理",
        "could not stop within {seconds:.0f} s; unfinished messages are in the journal and are "
        "re-driven at the next start",
    ),
    "no_mapping_tests": (
        "{paths} 下没有 *_test.yaml 映射测试",
        "no *_test.yaml mapping tests under {paths}",
    ),
    "person_unknown": ("找不到此人：{person}", "no person known as {person}"),
    "nothing_found": ("没有符合条件的记录", "nothing matches"),
    "command_failed": (
        "命令未能完成（{error}）：{detail}",
        "the command failed ({error}): {detail}",
    ),
    "db_unavailable": ("无法连接数据库 {url}：{error}", "cannot reach the database {url}: {error}"),
}

_lang = "zh"


def set_language(lang: str) -> None:
    global _lang
    _lang = "en" if lang.lower().startswith("en") else "zh"


def t(key: str, **values: object) -> str:
    return pick(_TEXT[key], **values)


def pick(texts: tuple[str, str], **values: object) -> str:
    """The (zh, en) pair in the chosen language, formatted; packages keep their own tables."""
    zh, en = texts
    return (en if _lang == "en" else zh).format(**values)

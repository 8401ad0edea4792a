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
    # mapping explain / mapping run (engine/mapping_cli.py)
    "trial_header": (
        "{file}（通道 {channel}{default}）：第 {n} 条消息 {type}，控制号 {control}，编码 {encoding}",
        "{file} (channel {channel}{default}): message {n}, {type}, control id {control}, encoding {encoding}",
    ),
    "trial_default_channel": ("，默认为 routes.yaml 的第一个通道", ", the first in routes.yaml by default"),
    "trial_rejected": ("拒收（AR，不进入转换）：{reason}", "rejected (AR, never transformed): {reason}"),
    "trial_route": ("路由：{routes}", "route: {routes}"),
    "trial_may_make": ("可生成的记录类型：{types}", "record types it can make: {types}"),
    "trial_made": ("生成 {n} 条记录：{records}", "{n} record(s): {records}"),
    "trial_no_record": (
        "未映射：路由 {routes} 接收了该消息，但其映射没有生成任何记录",
        "unmapped: route {routes} took the message but its mapping made no record",
    ),
    "trial_no_route": (
        "未映射：没有路由接收来自通道 {channel} 的 {type}",
        "unmapped: no route takes {type} from channel {channel}",
    ),
    "trial_other_channels": (
        "  （接收 {type} 的路由 {routes} 不从通道 {channel} 接收）",
        "  (routes {routes} take {type}, but not from channel {channel})",
    ),
    "trial_conditions_failed": (
        "未映射：{n} 条路由接收来自通道 {channel} 的 {type}，但它们的条件都不成立：",
        "unmapped: {n} route(s) take {type} from channel {channel}, but none of their conditions holds:",
    ),
    "trial_condition": ("  {route}：条件 {condition}", "  {route}: when {condition}"),
    "trial_condition_seen": (
        "  {route}：条件 {condition}（实际值 {seen}）",
        "  {route}: when {condition} (it saw {seen})",
    ),
    "trial_failed": (
        "映射失败（死信中将显示为）：{error}",
        "mapping failed (as the dead letter would show it): {error}",
    ),
    "trial_failed_explain": (
        "映射在此消息上失败；原因中可能含有患者数据，请用 `mch-engine mapping run` 查看",
        "the mapping fails on this message; the reason may quote patient data, see it with "
        "`mch-engine mapping run`",
    ),
    "trial_unknown_channel": (
        "没有名为 {channel} 的通道；可用的通道：{known}",
        "no channel named {channel}; channels: {known}",
    ),
    "explain_fields": (
        "本消息有值的字段及其可填入的记录字段（不显示值）：",
        "fields with a value in this message and the record fields they could fill (values not shown):",
    ),
    "explain_times": ("（{n} 处）", "({n}×)"),
    "explain_not_mapped": ("未映射", "not mapped"),
    "explain_if": ("若 {condition}", "if {condition}"),
    "explain_obx": ("仅 OBX-3.1 为 {code} 的观察", "only the OBX whose OBX-3.1 is {code}"),
    "explain_table": (
        "经代码表 {table}，仅表中列出的代码（本消息 {count} 个代码中 {listed} 个在表中）",
        "through code table {table}, only codes it lists ({listed} of this message's {count} listed)",
    ),
    "explain_site_field": ("（本院自定义 Z 段）", "(site-defined Z-segment)"),
    "explain_not_standard": ("（非 HL7 标准字段）", "(not a standard HL7 field)"),
    "run_summary_ok": ("已映射：{n} 条消息，{records} 条记录", "mapped: {n} message(s), {records} record(s)"),
    "run_summary_bad": (
        "{bad} / {n} 条消息未映射或失败",
        "{bad} of {n} message(s) unmapped or failed",
    ),
    "test_needs_cases": ("测试文件需要一个非空的 tests: 列表", "a test file needs a non-empty 'tests:' list"),
    "test_case_not_mapping": ("每个测试用例必须是一个映射（键: 值）", "a test case must be a mapping"),
    "test_unknown_keys": ("未知的键 {keys}（可用：{known}）", "unknown keys {keys} (expected {known})"),
    "test_mapping_failed": ("映射失败：{error}", "mapping failed: {error}"),
    "test_expected_error": (
        "应报错（包含 {error!r}），实际生成了 {n} 条记录",
        "expected an error containing {error!r}, got {n} record(s)",
    ),
    "test_record_count": (
        "应生成 {want} 条记录，实际 {n} 条（{kinds}）",
        "expected {want} record(s), got {n} ({kinds})",
    ),
    "test_expectation_shape": (
        "期望必须是含 type 和 fields 的映射",
        "expectation must be a mapping with type and fields",
    ),
    "test_differs": ("{what}：应为 {want!r}，实际 {got!r}", "{what}: expected {want!r}, got {got!r}"),
    "test_count": ("应有 {want} 项，实际 {got}", "expected {want} item(s), got {got}"),
    "test_not_absent": ("应为空，实际 {got!r}", "expected no value, got {got!r}"),
    "test_no_field": (
        "应为 {want!r}，但记录中没有此字段",
        "expected {want!r}, but the record has no such field",
    ),
    "test_value_differs": ("应为 {want!r}，实际 {got!r}", "expected {want!r}, got {got!r}"),
    "test_ok": ("通过", "ok  "),
    "test_fail": ("失败", "FAIL"),
    "test_summary": ("{passed} 个通过，{failed} 个失败", "{passed} passed, {failed} failed"),
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

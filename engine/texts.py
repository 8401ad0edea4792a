"""The engine's own operator-facing texts, registered in the one catalogue (core/i18n.py)
when the `engine` package is imported; a command's own table may live beside it instead."""

from __future__ import annotations

from core import i18n

_TEXT: dict[str, tuple[str, str]] = {
    # key: (zh, en)
    # Command descriptions in `--help` (engine/cli.py and the modules adding commands).
    "help_engine": (
        "妇幼保健院集成引擎（Integration engine for maternal and child health hospitals）。",
        "Integration engine for maternal and child health hospitals (妇幼保健院).",
    ),
    "help_lang": (
        "操作提示的语言，可写在命令行任意位置（默认 zh）",
        "language of operator messages, anywhere on the line (default zh)",
    ),
    "help_cmd_run": ("运行引擎", "run the engine"),
    "help_cmd_check": ("检查 routes.yaml 及其映射文件", "validate routes.yaml and its mapping files"),
    "help_cmd_reload": (
        "让运行中的引擎重新加载 routes.yaml、映射和代码表（或发送 SIGHUP）",
        "reload routes.yaml, mappings and code tables in the running engine (or SIGHUP)",
    ),
    "help_cmd_mapping": ("映射文件：测试、解释、试运行", "mapping files: test, explain and run"),
    "help_cmd_mapping_test": (
        "运行映射文件旁的测试（不需要消息总线或数据库）",
        "run the tests beside the mapping files (no broker or database)",
    ),
    "help_cmd_mapping_explain": (
        "消息的每个字段可能填入哪些记录字段",
        "which record fields each field of a message could fill",
    ),
    "help_cmd_mapping_run": (
        "消息转换成的记录（JSON）以及由哪条路由处理",
        "the records a message becomes, as JSON, and which route took it",
    ),
    "help_cmd_db_check": (
        "连接 HIS 数据库，按 db_poll 通道的读法显示视图中的行",
        "connect to a HIS database and show rows of a view as a db_poll channel reads them",
    ),
    "help_cmd_schema": ("标准记录的数据结构", "canonical record schemas"),
    "help_cmd_schema_export": ("为每种记录类型写出一个 JSON Schema", "write one JSON Schema per record type"),
    "help_cmd_deadletter": (
        "死信：列出、查看、重放、重新处理、清除、审计",
        "dead letters (死信): list, show, replay, reprocess, purge, audit",
    ),
    "help_cmd_deadletter_list": (
        "列出死信，最近失败的在前（默认只列未处理的）",
        "list dead letters, newest failure first (default: open ones)",
    ),
    "help_cmd_deadletter_show": (
        "一条死信：原因、原始消息、载荷、每次尝试",
        "one dead letter: reason, raw message, payload, every attempt",
    ),
    "help_cmd_deadletter_replay": (
        "把保存的载荷再次发送到原目的地",
        "send the kept payload to the same destination again (重放)",
    ),
    "help_cmd_deadletter_reprocess": (
        "用当前的映射和路由重新处理原始消息",
        "run the raw message through the current mappings and routes (重新处理)",
    ),
    "help_cmd_deadletter_purge": (
        "注明原因后永久关闭死信",
        "close dead letters for good, with a reason (清除)",
    ),
    "help_cmd_deadletter_audit": (
        "死信操作的审计日志，最新的在前",
        "the audit log of dead-letter actions, newest first",
    ),
    "help_cmd_status": (
        "引擎正在做什么；有部分停止时退出码为 1",
        "what the engine is doing; exit 1 when something is down",
    ),
    "help_cmd_docs": ("根据配置模型生成 docs/routes.md", "write docs/routes.md from the settings models"),
    "help_cmd_send": ("通过 MLLP 发送 HL7 文件并显示每条应答", "send HL7 files over MLLP and print each ACK"),
    "help_cmd_messages": ("消息日志", "the message journal"),
    "help_cmd_messages_list": ("列出日志中的消息，最新的在前", "list journaled messages, newest first"),
    "help_cmd_records": ("健康档案库", "the health-record store"),
    "help_cmd_records_list": ("列出已保存的记录，最新的在前", "list stored records, newest first"),
    "help_cmd_records_timeline": ("一个人的完整周期，最早的在前", "one person's whole cycle, oldest first"),
    "check_ok": (
        "{file}: 配置正确（{channels} 个通道，{routes} 条路由，{destinations} 个目的地）",
        "{file}: OK ({channels} channels, {routes} routes, {destinations} destinations)",
    ),
    "types_channels": ("通道类型：{names}", "channel types: {names}"),
    "types_destinations": ("目的地类型：{names}", "destination types: {names}"),
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
    "test_ok": ("通过", "ok  "),
    "test_fail": ("失败", "FAIL"),
    "test_summary": ("{passed} 个通过，{failed} 个失败", "{passed} passed, {failed} failed"),
    "person_unknown": ("找不到此人：{person}", "no person known as {person}"),
    "nothing_found": ("没有符合条件的记录", "nothing matches"),
    "command_failed": (
        "命令未能完成（{error}）：{detail}",
        "the command failed ({error}): {detail}",
    ),
    "db_unreachable": (
        "无法连接数据库 {url}（{error}）：请检查数据库服务是否在运行，以及配置项 {setting} 是否正确",
        "cannot reach the database {url} ({error}): check that the database server is running "
        "and that {setting} is right",
    ),
    "db_path_unusable": (
        "无法打开数据库文件 {path}（{error}）："
        "请检查所在文件夹是否存在且可写，以及配置项 {setting}（{url}）是否正确",
        "cannot open the database file {path} ({error}): check that its folder exists and can be "
        "written, and that {setting} ({url}) is right",
    ),
    "db_file_missing": (
        "数据库文件 {path} 不存在（{setting}：{url}）："
        "请检查路径，或先用 mch-engine run 启动一次引擎以创建它",
        "the database file {path} does not exist ({setting}: {url}): check the path, "
        "or start the engine once with `mch-engine run` to create it",
    ),
    "broker_unreachable": (
        "无法连接消息总线 {url}（{error}）："
        "请检查 RabbitMQ 是否在运行，以及 engine.broker（或 MCH_BROKER_URL）是否正确",
        "cannot reach the message broker {url} ({error}): check that RabbitMQ is running "
        "and that engine.broker (or MCH_BROKER_URL) is right",
    ),
    "more_rows": (
        "…… 另有 {more} 条未显示（共 {total} 条）：加 --limit {limit} 或 --all 查看全部",
        "… {more} more not shown ({total} in all): --limit {limit} or --all to see them",
    ),
    "bad_filter": (
        "{option} 的值 {value!r} 不存在。可用的值：{valid}",
        "no {option} {value!r}. Valid values: {valid}",
    ),
    "bad_filter_none": (
        "{option} 的值 {value!r} 不存在（目前还没有任何可选值）",
        "no {option} {value!r} (there are no values yet)",
    ),
    "person_unknown_hint": (
        "找不到此人：{person}。可用人员编号、身份证号或 HIS 患者号查询"
        "（mch-engine records list --type Person 列出人员）",
        "no person known as {person}. Give a person key, an ID card number or a HIS patient id "
        "(`mch-engine records list --type Person` lists persons)",
    ),
    "bad_lang": ("--lang 只能是 zh 或 en（收到 {value!r}）", "--lang must be zh or en (got {value!r})"),
    "check_audience_refused": (
        "routes[{route}].to: {record_type} 记录只供 {audience} 接收，不能发往 {destination}"
        "（reaches: {reaches}）；请从 to 中去掉它，或改用 reaches 为 system 或 {audience} 的目的地",
        "routes[{route}].to: {record_type} records are for {audience} only and may not go to "
        "{destination} (reaches: {reaches}); take it out of `to:` or use a destination that "
        "reaches system or {audience}",
    ),
    "check_problem": ("{files} 中共有 {n} 处问题", "{n} problem in {files}"),
    "check_problems": ("{files} 中共有 {n} 处问题", "{n} problems in {files}"),
    "send_refused": (
        "{where}  无法连接 {host}:{port}（{error}）：引擎可能没有在这个地址/端口上运行，请检查 --to",
        "{where}  cannot connect to {host}:{port} ({error}): the engine may not be running at "
        "that address/port; check --to",
    ),
    "send_gave_up": (
        "连续 {n} 次连接失败，停止发送；其余 {left} 条未发送",
        "{n} connection failures in a row: stopped; {left} not sent",
    ),
    "child_mark": ("（子女）", " (child)"),
    "observations": ("（{n} 项结果）", " ({n} observations)"),
    # Column titles.
    "col_msg_id": ("编号", "id"),
    "col_received": ("接收时间", "received"),
    "col_msg_channel": ("通道", "channel"),
    "col_msg_type": ("消息类型", "type"),
    "col_control_id": ("控制号", "control id"),
    "col_status": ("状态", "status"),
    "col_ack": ("应答", "ack"),
    "col_deliveries": ("投递", "deliveries"),
    "col_record_type": ("记录类型", "record type"),
    "col_record_id": ("记录编号", "record id"),
    "col_person": ("人员", "person"),
    "col_summary": ("摘要", "summary"),
    "col_date": ("日期", "date"),
    "col_stage": ("阶段", "stage"),
    "col_audit_id": ("编号", "id"),
    "col_audit_at": ("时间", "at"),
    "col_actor": ("操作人", "by"),
    "col_action": ("操作", "action"),
    "col_count": ("条数", "count"),
    "col_target": ("对象", "target"),
    # Statuses: the journal's, a delivery's, a dead letter's.
    "status_received": ("已接收", "received"),
    "status_rejected": ("已拒收", "rejected"),
    "status_routed": ("已路由", "routed"),
    "status_unrouted": ("无路由", "unrouted"),
    "status_failed": ("失败", "failed"),
    "status_delivered": ("已投递", "delivered"),
    "status_pending": ("待投递", "pending"),
    "status_retrying": ("重试中", "retrying"),
    "status_dead": ("死信", "dead"),
    "status_open": ("未处理", "open"),
    "status_replayed": ("已重放", "replayed"),
    "status_reprocessed": ("已重新处理", "reprocessed"),
    "status_purged": ("已清除", "purged"),
    # Stages of a person's timeline.
    "timeline_premarital": ("婚前", "premarital"),
    "timeline_pregnancy": ("孕期", "pregnancy"),
    "timeline_delivery": ("分娩", "delivery"),
    "timeline_postpartum": ("产后", "postpartum"),
    "timeline_child": ("儿童", "child"),
    "timeline_lab": ("检验", "lab"),
    "timeline_imaging": ("检查", "imaging"),
    "timeline_other": ("其他", "other"),
    # Record types (the filter value stays the English name).
    "record_Person": ("人员", "Person"),
    "record_PremaritalExam": ("婚前检查", "PremaritalExam"),
    "record_PregnancyRegistration": ("孕产妇建册", "PregnancyRegistration"),
    "record_PrenatalVisit": ("产前检查", "PrenatalVisit"),
    "record_RiskAssessment": ("高危评估", "RiskAssessment"),
    "record_LabResult": ("检验结果", "LabResult"),
    "record_ImagingReport": ("影像报告", "ImagingReport"),
    "record_DeliveryRecord": ("分娩记录", "DeliveryRecord"),
    "record_NewbornRecord": ("新生儿记录", "NewbornRecord"),
    "record_PostpartumVisit": ("产后访视", "PostpartumVisit"),
    "record_ChildHealthExam": ("儿童保健体检", "ChildHealthExam"),
    "record_NewbornScreening": ("新生儿筛查", "NewbornScreening"),
    "record_PmtctCase": ("预防母婴传播随访", "PmtctCase"),
    # argparse's messages (engine/cli_language.py); the en text is argparse's own.
    "argparse_usage": ("用法：", "usage: "),
    "argparse_error": ("%(prog)s：错误：%(message)s\n", "%(prog)s: error: %(message)s\n"),
    "argparse_argument": ("参数 %(argument_name)s：%(message)s", "argument %(argument_name)s: %(message)s"),
    "argparse_required": ("缺少必需的参数：%s", "the following arguments are required: %s"),
    "argparse_unrecognized": ("无法识别的参数：%s", "unrecognized arguments: %s"),
    "argparse_choice": (
        "无效的值：%(value)r（可选：%(choices)s）",
        "invalid choice: %(value)r (choose from %(choices)s)",
    ),
    "argparse_type": ("无效的 %(type)s 值：%(value)r", "invalid %(type)s value: %(value)r"),
    "argparse_one": ("需要一个值", "expected one argument"),
    "argparse_at_least_one": ("至少需要一个值", "expected at least one argument"),
    "argparse_at_most_one": ("最多只能有一个值", "expected at most one argument"),
    "argparse_not_allowed": ("不能与参数 %s 同时使用", "not allowed with argument %s"),
    "argparse_one_of": ("必须给出以下参数之一：%s", "one of the arguments %s is required"),
    "argparse_ambiguous": (
        "选项不明确：%(option)s 可能是 %(matches)s",
        "ambiguous option: %(option)s could match %(matches)s",
    ),
    "argparse_positionals": ("位置参数", "positional arguments"),
    "argparse_options": ("选项", "options"),
    "argparse_help": ("显示此帮助并退出", "show this help message and exit"),
    # WeChat notices (engine/wechat_cli.py, channels/wechat/).
    "help_cmd_wechat": ("微信通知：发件箱、绑定", "WeChat notices: outbox, bindings"),
    "help_cmd_wechat_outbox": (
        "列出微信通知（发件箱与台账），最新的在前；openid 已脱敏",
        "list WeChat notices (outbox and ledger), newest first; openids masked",
    ),
    "wechat_col_id": ("编号", "id"),
    "wechat_col_created": ("生成时间", "created"),
    "wechat_col_status": ("状态", "status"),
    "wechat_col_recipient": ("接收人", "recipient"),
    "wechat_col_template": ("模板", "template"),
    "wechat_col_due": ("发送时间", "due/sent"),
    "wechat_col_data": ("模板内容", "key values"),
    "wechat_unbound": ("（未绑定）", "(not bound)"),
    "wechat_status_outbox": ("发件箱（未发送）", "outbox (not sent)"),
    "wechat_status_held": ("暂缓（免打扰时段）", "held (quiet hours)"),
    "wechat_status_queued": ("待发送", "queued"),
    "wechat_status_sent": ("已发送", "sent"),
    "wechat_status_undeliverable": ("无法送达", "undeliverable"),
    "wechat_status_stale": ("已过时，未发送", "stale, not sent"),
    "wechat_status_failed": ("发送失败", "failed"),
}


i18n.register(_TEXT)

"""What the on-call reads when something is wrong, run as the on-call runs it: subprocesses.

An unreachable database or broker is one line naming the masked URL (exit 2), for every
command that opens one; `--lang` works anywhere; argparse answers in Chinese by default;
filters that name nothing say what exists (exit 2); listings have titles, a default
limit and a line saying what was left out; times carry the configured zone's offset;
`send` gives up on a port where nothing listens.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from support import AMQP_URL, REPO, RunningEngine, free_port, hl7, pg_schema, require_service, wait_until

CLI = [sys.executable, "-m", "engine.cli"]
SHANGHAI = ZoneInfo("Asia/Shanghai")


def mch(*args: str, cwd: Path, lang: str | None = "en", **env_extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCH_")}
    env.update(PYTHONPATH=str(REPO), **env_extra)
    if lang:
        env["MCH_LANG"] = lang
    return subprocess.run([*CLI, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=90)


def output_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [ln for ln in (result.stdout + result.stderr).splitlines() if ln.strip()]


# --------------------------------------------------------------------------- unreachable services

# Every command that opens the journal or a record store.
DATABASE_COMMANDS = [
    ["run"],
    ["messages", "list"],
    ["records", "list"],
    ["records", "timeline", "--person", "500112199508122421"],
    ["deadletter", "list"],
    ["deadletter", "show", "1"],
    ["deadletter", "replay", "1"],
    ["deadletter", "reprocess", "1"],
    ["deadletter", "purge", "1", "--why", "test"],
    ["deadletter", "audit"],
    ["reload"],
    ["reprocess", "--route", "persons", "--dry-run"],
    ["check", "--diff"],
]


def _closed_pg(tmp_path: Path) -> tuple[str, str]:
    port = free_port()
    return (
        f"postgresql+psycopg://postgres:s3cret@127.0.0.1:{port}/test",
        f"postgres:***@127.0.0.1:{port}/test",
    )


def _sqlite_missing_folder(tmp_path: Path) -> tuple[str, str]:
    path = tmp_path / "no-such-folder" / "engine.db"
    return f"sqlite:///{path}", str(path)


def _sqlite_folder_under_a_file(tmp_path: Path) -> tuple[str, str]:
    (tmp_path / "a-file").write_text("not a folder")
    path = tmp_path / "a-file" / "var" / "engine.db"
    return f"sqlite:///{path}", str(path)


# `run` creates a missing SQLite folder on first start, as the README says: only a folder
# that cannot be created stops it. So do `reload` and `check --diff`, which then say that no
# engine has run with that database.
CREATING = (["run"], ["reload"], ["check", "--diff"])
UNREACHABLE = [
    pytest.param(database, command, id=f"{database.__name__}-{'-'.join(command[:2])}")
    for database in (_closed_pg, _sqlite_missing_folder, _sqlite_folder_under_a_file)
    for command in DATABASE_COMMANDS
    if not (command in CREATING and database is _sqlite_missing_folder)
]


@pytest.mark.parametrize(("database", "command"), UNREACHABLE)
def test_an_unreachable_database_is_one_line_with_the_masked_url(
    tmp_path: Path, command: list[str], database: object
) -> None:
    """One line naming the database (password masked) and what to check; exit 2; no traceback."""
    url, shown = database(tmp_path)  # type: ignore[operator]
    result = mch(*command, "--config", str(REPO / "routes.yaml"), cwd=tmp_path, MCH_DB_URL=url)
    lines = output_lines(result)
    assert result.returncode == 2, lines
    assert len(lines) == 1, lines
    assert shown in lines[0], lines
    assert "s3cret" not in lines[0]
    assert "check" in lines[0], lines
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [["run"], ["records", "list"]], ids=" ".join)
def test_an_unreachable_record_store_names_its_own_setting(tmp_path: Path, command: list[str]) -> None:
    """The journal is fine, the record store's own database (MCH_STORE_URL) is not: the line says which."""
    url, shown = _closed_pg(tmp_path)
    result = mch(
        *command,
        "--config",
        str(REPO / "routes.yaml"),
        cwd=tmp_path,
        MCH_DB_URL=f"sqlite:///{tmp_path}/engine.db",
        MCH_STORE_URL=url,
        MCH_HTTP_LISTEN=f"127.0.0.1:{free_port()}",
    )
    lines = output_lines(result)
    assert result.returncode == 2, lines
    assert len(lines) == 1 and shown in lines[0], lines
    assert "destinations.record_store.database" in lines[0]


def _with_a_closed_broker(command: str, tmp_path: Path) -> tuple[int, subprocess.CompletedProcess[str]]:
    """`command` with RabbitMQ on a port where nothing listens (password s3cret); the port and the result."""
    port = free_port()
    broker = f"amqp://guest:s3cret@127.0.0.1:{port}//"
    config = ["--config", str(REPO / "routes.yaml")]
    return port, mch(
        command, *config, cwd=tmp_path, MCH_DB_URL=f"sqlite:///{tmp_path}/engine.db", MCH_BROKER_URL=broker
    )


def test_an_unreachable_broker_stops_run_with_one_line(tmp_path: Path) -> None:
    """`run` with RabbitMQ on a closed port: one line with the masked amqp URL, exit 2, nothing listens."""
    port, result = _with_a_closed_broker("run", tmp_path)
    lines = output_lines(result)
    assert result.returncode == 2, lines
    assert lines == [line for line in lines if "message broker" in line], lines
    assert f"amqp://guest:***@127.0.0.1:{port}//" in lines[0]
    assert "s3cret" not in result.stdout + result.stderr


def test_status_with_an_unreachable_broker_names_it_on_one_line(tmp_path: Path) -> None:
    """`status` is the only command besides `run` that talks to the broker (queue depths). A closed
    port is one of its problem lines, with the masked URL; no traceback. It is a thing that is
    down, so `status` exits 1 as documented for everything down, not 2."""
    port, result = _with_a_closed_broker("status", tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    about_bus = [ln for ln in output_lines(result) if "message bus" in ln]
    assert about_bus == [
        f"cannot reach the message bus amqp://guest:***@127.0.0.1:{port}// (OperationalError)"
    ]
    assert "s3cret" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr and result.stderr == ""


def test_the_chinese_line_names_the_url_too(tmp_path: Path) -> None:
    url, shown = _closed_pg(tmp_path)
    result = mch(
        "messages", "list", "--config", str(REPO / "routes.yaml"), cwd=tmp_path, lang=None, MCH_DB_URL=url
    )
    assert result.returncode == 2
    assert output_lines(result) == [result.stderr.strip()]
    assert "无法连接数据库" in result.stderr and shown in result.stderr


def test_a_reader_that_leaves_early_is_not_an_unreachable_database(tmp_path: Path) -> None:
    """`deadletter audit --all | head -1`: the reader leaving mid-listing is no database
    error; the command stops quietly with the exit code of a closed pipe (0)."""
    from sqlalchemy import insert

    from core.clock import now_utc
    from core.database import make_engine
    from deadletter import audit

    url = f"sqlite:///{tmp_path}/engine.db"
    engine = make_engine(url)
    audit.ensure_schema(engine)
    row = {"at": now_utc(), "actor": "张三", "os_user": "zhangsan", "action": "show", "count": 1}
    with engine.begin() as conn:  # far more than a pipe's buffer holds
        conn.execute(
            insert(audit.audit_log), [{**row, "target": str(i), "outcome": "done"} for i in range(3000)]
        )
    engine.dispose()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCH_")}
    env.update(PYTHONPATH=str(REPO), MCH_DB_URL=url)
    command = [*CLI, "deadletter", "audit", "--all", "--config", str(REPO / "routes.yaml")]
    with subprocess.Popen(
        command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.read(10)  # it has started printing; then the reader goes away
        proc.stdout.close()
        stderr = proc.stderr.read().decode("utf-8")
        code = proc.wait(timeout=60)
    assert "数据库" not in stderr and "Broken pipe" not in stderr and "Traceback" not in stderr, stderr
    assert code == 0, stderr


# --------------------------------------------------------------------------- language


class TestLanguage:
    def test_lang_works_after_the_subcommand_and_overrides_mch_lang(self, tmp_path: Path) -> None:
        config = ["--config", str(REPO / "routes.yaml")]
        after = mch("check", *config, "--lang", "en", cwd=tmp_path, lang="zh")
        assert after.returncode == 0 and ": OK (" in after.stdout, after.stdout + after.stderr
        equals = mch("check", "--lang=zh", *config, cwd=tmp_path, lang="en")
        assert "配置正确" in equals.stdout
        from_env = mch("check", *config, cwd=tmp_path, lang="en")
        assert ": OK (" in from_env.stdout

    def test_an_unknown_language_is_refused(self, tmp_path: Path) -> None:
        result = mch("check", "--lang", "fr", cwd=tmp_path)
        assert result.returncode == 2
        assert output_lines(result) == ["--lang must be zh or en (got 'fr')"]

    def test_argparse_errors_speak_the_operators_language(self, tmp_path: Path) -> None:
        """A wrong choice or a missing argument is explained in Chinese by default, in English with --lang en."""
        zh = mch("messages", "list", "--status", "bogus", cwd=tmp_path, lang=None)
        assert zh.returncode == 2
        assert zh.stderr.startswith("用法：mch-engine messages list"), zh.stderr
        assert "参数 --status：无效的值：'bogus'（可选：'received', 'routed'" in zh.stderr
        missing = mch("records", "timeline", cwd=tmp_path, lang=None)
        assert missing.returncode == 2 and "缺少必需的参数：--person" in missing.stderr
        en = mch("messages", "list", "--status", "bogus", "--lang", "en", cwd=tmp_path, lang=None)
        assert en.returncode == 2 and "invalid choice: 'bogus'" in en.stderr

    @pytest.mark.parametrize(
        "group", [[], ["deadletter"], ["mapping"], ["messages"], ["records"], ["schema"]]
    )
    def test_help_describes_every_command_in_the_operators_language(
        self, tmp_path: Path, group: list[str]
    ) -> None:
        """`--help` lists each command with a description: Chinese by default, English with --lang en."""

        def descriptions(lang: str | None, *extra: str) -> dict[str, str]:
            result = mch(*group, "--help", *extra, cwd=tmp_path, lang=lang)
            assert result.returncode == 0, result.stderr
            lines = result.stdout.split("\n  COMMAND\n" if not group else "\n  ACTION\n")[1].split("\n\n")[0]
            found: dict[str, str] = {}
            name = ""
            for line in lines.splitlines():
                if line.startswith("    ") and not line.startswith("     "):
                    name, _, text = line.strip().partition(" ")
                    found[name] = text.strip()
                else:  # a long name puts its description on the next line
                    found[name] = (found[name] + " " + line.strip()).strip()
            return found

        zh = descriptions(None)
        assert zh and all(re.search("[\u4e00-\u9fff]", text) for text in zh.values()), zh
        assert not [text for text in zh.values() if re.search("[a-z]{4} [a-z]{3}", text)], zh
        en = descriptions(None, "--lang", "en")
        assert en.keys() == zh.keys()
        assert all(re.match("[a-zA-Z]", text) for text in en.values()), en
        if not group:
            top = mch("--help", cwd=tmp_path, lang=None).stdout
            assert "妇幼保健院集成引擎" in top and "操作提示的语言" in top

    def test_check_problem_count_is_translated(self, tmp_path: Path) -> None:
        routes = tmp_path / "routes.yaml"
        routes.write_text(
            "version: 1\nchannels: {}\nroutes: []\ndestinations: {}\nbogus: 1\n", encoding="utf-8"
        )
        zh = mch("check", "--config", str(routes), cwd=tmp_path, lang=None)
        assert zh.returncode == 1
        assert re.search(r"routes\.yaml 中共有 \d+ 处问题$", zh.stderr.strip()), zh.stderr
        en = mch("check", "--config", str(routes), cwd=tmp_path)
        assert re.search(r"\d+ problems? in .*routes\.yaml$", en.stderr.strip()), en.stderr

    @pytest.mark.parametrize("command", [["check", "--diff"], ["reload"]], ids=" ".join)
    def test_diff_and_reload_count_problems_in_the_operators_language(
        self, tmp_path: Path, command: list[str]
    ) -> None:
        """`check --diff` and `reload` refuse a bad file before anything else, counting its problems as `check` does."""
        routes = tmp_path / "routes.yaml"
        routes.write_text(
            "version: 1\nchannels: {}\nroutes: []\ndestinations: {}\nbogus: 1\n", encoding="utf-8"
        )
        zh = mch(*command, "--config", str(routes), cwd=tmp_path, lang=None)
        assert zh.returncode == 1
        assert re.search(r"routes\.yaml 中共有 \d+ 处问题$", zh.stderr.strip()), zh.stderr
        assert "problem" not in zh.stderr
        en = mch(*command, "--config", str(routes), cwd=tmp_path)
        assert en.returncode == 1
        assert re.search(r"\d+ problems? in .*routes\.yaml$", en.stderr.strip()), en.stderr


# --------------------------------------------------------------------------- send


def test_send_to_a_closed_port_gives_up_and_says_why(tmp_path: Path) -> None:
    """A thousand messages to a port where nothing listens: a few lines, a stop line, exit 1."""
    port = free_port()
    sample = str(REPO / "samples/adt_a04_registration.hl7")
    result = mch("send", sample, "--repeat", "1000", "--to", f"127.0.0.1:{port}", cwd=tmp_path)
    lines = output_lines(result)
    assert result.returncode == 1
    assert len(lines) == 4, lines
    assert all(f"cannot connect to 127.0.0.1:{port}" in ln and "may not be running" in ln for ln in lines[:3])
    assert lines[3] == "3 connection failures in a row: stopped; 997 not sent"


# --------------------------------------------------------------------------- listings, on both backends


def adt(n: int, run: str) -> bytes:
    return hl7(
        f"MSH|^~\\&|HIS|FY01|MCHENGINE|FY01|20250310091500||ADT^A04^ADT_A01|L-{run}-{n}|P|2.5|||AL|NE|CHN|UNICODE UTF-8",
        "EVN|A04|20250310091400",
        f"PID|1||HIS{run}{n:04d}^^^HIS^PI||测试{n}^^^^^^L||19950812|F",
    )


def lab_only(run: str) -> bytes:
    """A lab result for someone the HIS never registered: the person comes from the ORU alone."""
    return hl7(
        f"MSH|^~\\&|LIS|10|MCHENGINE|FY01|20250310113000||ORU^R01|ORU-{run}|P|2.4|||AL|NE|CHN|UNICODE UTF-8",
        f"PID|1||LAB{run}^^^HIS^PI",
        f"OBR|1|P{run}|F{run}|BLD01^血常规^L|||20250310093000||||||||BLD^全血|||||||20250310112500||HEM|F",
        "OBX|1|NM|HGB^血红蛋白^L||118|g/L|115-150|N|||F|||20250310112000",
        "OBX|2|NM|PLT^血小板计数^L||210|10\\S\\9/L|125-350|N|||F|||20250310112000",
    )


@pytest.fixture(params=["embedded", "rabbitmq+postgres"])
def loaded(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A routes.yaml whose journal and store hold 60 registrations and one lab-only person."""
    from support import write_routes

    run = uuid.uuid4().hex[:6]
    if request.param == "embedded":
        database, broker = f"sqlite:///{tmp_path}/engine.db", "memory://"
        context: object = None
    else:
        require_service("127.0.0.1", 5672, "RabbitMQ")
        context = pg_schema()
        database, broker = context.__enter__(), AMQP_URL  # type: ignore[attr-defined]
    try:
        routes = write_routes(tmp_path, database=database, broker=broker)
        with RunningEngine(routes) as engine:
            acks = engine.send([adt(n, run) for n in range(60)] + [lab_only(run)], concurrency=4)
            assert all(a and b"|AA|" in a for a in acks)
            wait_until(lambda: len(_json_rows(routes, "records", "list", "--all")) == 62, timeout=60)
        yield routes, run
    finally:
        if context is not None:
            context.__exit__(None, None, None)  # type: ignore[attr-defined]


def _json_rows(routes: Path, *command: str) -> list[dict[str, object]]:
    result = mch(*command, "--json", "--config", str(routes), cwd=routes.parent)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


class TestListings:
    def test_messages_list_has_titles_a_default_limit_and_local_times(self, loaded: tuple[Path, str]) -> None:
        routes, _ = loaded
        config = ["--config", str(routes)]
        shown = mch("messages", "list", *config, cwd=routes.parent)
        lines = shown.stdout.splitlines()
        assert shown.returncode == 0
        assert lines[0].split() == [
            "id",
            "received",
            "channel",
            "type",
            "control",
            "id",
            "status",
            "ack",
            "deliveries",
        ]
        assert len(lines) == 1 + 50 + 1, lines[-3:]
        assert lines[-1] == "… 11 more not shown (61 in all): --limit 61 or --all to see them"
        assert "routed" in lines[1] and "record_store:delivered" in lines[1]

        rows = _json_rows(routes, "messages", "list", "--limit", "3")
        assert len(rows) == 3
        received = datetime.fromisoformat(str(rows[0]["received_at"]))
        assert received.utcoffset() == SHANGHAI.utcoffset(received.replace(tzinfo=None))
        local = received.strftime("%Y-%m-%d %H:%M:%S") + "+08:00"
        assert f"  {local}  " in lines[1] or f"  {local}  " in lines[2], lines[1:3]

        everything = mch("messages", "list", "--all", *config, cwd=routes.parent)
        assert len(everything.stdout.splitlines()) == 1 + 61

        zh = mch("messages", "list", "--limit", "2", *config, cwd=routes.parent, lang=None)
        zh_lines = zh.stdout.splitlines()
        assert zh_lines[0].split()[:3] == ["编号", "接收时间", "通道"]
        assert "已路由" in zh_lines[1] and "record_store:已投递" in zh_lines[1]
        assert zh_lines[-1] == "…… 另有 59 条未显示（共 61 条）：加 --limit 61 或 --all 查看全部"

    def test_records_list_shows_no_none_and_translates_types(self, loaded: tuple[Path, str]) -> None:
        routes, run = loaded
        config = ["--config", str(routes)]
        persons = mch("records", "list", "--type", "Person", "--all", *config, cwd=routes.parent)
        lines = persons.stdout.splitlines()
        assert lines[0].split() == ["record", "type", "record", "id", "person", "summary"]
        assert len(lines) == 1 + 61
        assert not any(line.rstrip().endswith("None") for line in lines), [ln for ln in lines if "None" in ln]
        lab_person = [ln for ln in lines if f"LAB{run}" in ln]
        assert len(lab_person) == 1 and lab_person[0].rstrip().endswith("-"), lab_person

        labs = mch("records", "list", "--type", "LabResult", *config, cwd=routes.parent, lang=None)
        assert labs.stdout.splitlines()[1].startswith("检验结果"), labs.stdout
        assert "血常规（2 项结果）" in labs.stdout
        labs_en = mch("records", "list", "--type", "LabResult", *config, cwd=routes.parent)
        assert "血常规 (2 observations)" in labs_en.stdout

    def test_timeline_is_translated_with_titles(self, loaded: tuple[Path, str]) -> None:
        routes, run = loaded
        config = ["--config", str(routes)]
        zh = mch("records", "timeline", "--person", f"LAB{run}", *config, cwd=routes.parent, lang=None)
        lines = zh.stdout.splitlines()
        assert zh.returncode == 0, zh.stderr
        assert lines[0].split() == ["日期", "阶段", "记录类型", "人员", "摘要"]
        assert lines[1].split()[:3] == ["2025-03-10", "检验", "检验结果"], lines
        en = mch("records", "timeline", "--person", f"LAB{run}", *config, cwd=routes.parent)
        assert en.stdout.splitlines()[1].split()[:3] == ["2025-03-10", "lab", "LabResult"]

    def test_filters_that_name_nothing_say_what_exists(self, loaded: tuple[Path, str]) -> None:
        routes, _ = loaded
        config = ["--config", str(routes)]
        cases = {
            (
                "messages",
                "list",
                "--channel",
                "nosuch",
            ): "no --channel 'nosuch'. Valid values: hospital, lis_gbk",
            (
                "records",
                "list",
                "--type",
                "labresult",
            ): "no --type 'labresult'. Valid values: ChildHealthExam,",
            ("records", "list", "--person", "nobody"): "no person known as nobody.",
            ("records", "timeline", "--person", "nobody"): "no person known as nobody.",
            (
                "deadletter",
                "list",
                "--channel",
                "nosuch",
            ): "no --channel 'nosuch'. Valid values: hospital, lis_gbk",
            ("deadletter", "list", "--destination", "x"): "no --destination 'x'. Valid values: record_store",
        }
        for command, expected in cases.items():
            result = mch(*command, *config, cwd=routes.parent)
            assert result.returncode == 2, (command, result.stdout, result.stderr)
            assert result.stdout == ""
            assert result.stderr.startswith(expected), (command, result.stderr)
        status = mch("messages", "list", "--status", "bogus", *config, cwd=routes.parent)
        assert status.returncode == 2 and "choose from 'received', 'routed'" in status.stderr

"""`mch-engine check`: every problem of routes.yaml and its mappings in one run, with lines."""

from __future__ import annotations

import resource
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from core.config_paths import ConfigRoots
from core.errors import ConfigError, ConfigErrors
from core.settings import load_settings
from engine.check import check_config, format_problems, summarize

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch folder with one mapping file, so error lines start with `routes.yaml`."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mappings").mkdir()
    (tmp_path / "mappings" / "adt.yaml").write_text("# mapping\n", encoding="utf-8")
    return tmp_path


def _check(folder: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    (folder / "routes.yaml").write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    problems = check_config("routes.yaml", {} if env is None else env)
    return [str(p) for p in sorted(problems, key=lambda p: p.line or 0)]


GOOD_TAIL = """\
routes:
  - name: persons
    from: [his_adt]
    mapping: mappings/adt.yaml
    to: [record_store]
destinations:
  record_store: {type: record_store}
"""


def test_valid_example_has_no_problems() -> None:
    """The fixture routes.yaml passes the check."""
    assert check_config(FIXTURES / "routes.yaml", {}) == []


def test_the_callback_key_is_checked_without_being_shown() -> None:
    """MCH_WECHAT_ENCODING_AES_KEY: 43 characters of base64, and useless without the appid."""
    key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
    routes = FIXTURES / "routes.yaml"
    env = {"MCH_WECHAT_APPID": "wx5823bf96d3bd56c7"}
    assert check_config(routes, {**env, "MCH_WECHAT_ENCODING_AES_KEY": key}) == []
    for bad in (key[:-2], key[:-1] + "*"):
        problems = [str(p) for p in check_config(routes, {**env, "MCH_WECHAT_ENCODING_AES_KEY": bad})]
        assert len(problems) == 1 and "MCH_WECHAT_ENCODING_AES_KEY" in problems[0]
        assert bad not in problems[0]
    alone = [str(p) for p in check_config(routes, {"MCH_WECHAT_ENCODING_AES_KEY": key})]
    assert len(alone) == 1 and "MCH_WECHAT_APPID" in alone[0] and key not in alone[0]


def test_many_problems_are_reported_in_one_run(workdir: Path) -> None:
    """A schema typo, a bad port, an unset variable, an unknown channel type and broken
    references all come out together, each on its own line."""
    assert _check(
        workdir,
        """
        version: 1
        engine:
          database: ${MCH_DB}
        channels:
          his_adt:
            type: mllp
            listn: 127.0.0.1:2575
          lis:
            type: mllp
            listen: 127.0.0.1:99999
          pacs:
            type: mlp
            listen: 127.0.0.1:2577
        routes:
          - name: persons
            from: [his_adt, lsi]
            mapping: mappings/adt.yaml
            to: [record_stor]
          - name: persons
            from: his_adt
            mapping: mappings/missing.yaml
            to: record_store
        destinations:
          record_store: {type: record_store}
        """,
    ) == [
        "routes.yaml:3: engine.database: environment variable MCH_DB is not set "
        "(use ${MCH_DB:-default} for a fallback)",
        "routes.yaml:7: channels.his_adt: unknown key 'listn' (did you mean 'listen'?)",
        "routes.yaml:10: channels.lis.listen: port 99999 is out of range 1..65535",
        "routes.yaml:12: channels.pacs.type: unknown channel type 'mlp' (known: alerts, db_poll, derived, file, mllp; did you mean 'mllp'?)",
        "routes.yaml:16: routes[0].from[1]: unknown channel 'lsi' (did you mean 'lis'?)",
        "routes.yaml:18: routes[0].to[0]: unknown destination 'record_stor' (did you mean 'record_store'?)",
        "routes.yaml:19: routes[1].name: duplicate route name 'persons' (first at line 15)",
        "routes.yaml:21: routes[1].mapping: mapping file not found: "
        f"{workdir.resolve() / 'mappings' / 'missing.yaml'}",
    ]


def test_unknown_destination_suggests_the_closest(workdir: Path) -> None:
    """A route to an unknown destination names the one it probably meant."""
    text = "version: 1\nchannels:\n  his_adt: {type: mllp, listen: 127.0.0.1:2575}\n"
    tail = GOOD_TAIL.replace("to: [record_store]", "to: [recordstore]")
    assert _check(workdir, text + tail) == [
        "routes.yaml:8: routes[0].to[0]: unknown destination 'recordstore' (did you mean 'record_store'?)"
    ]


def test_unknown_destination_without_close_match_lists_known(workdir: Path) -> None:
    """With nothing close, the defined destinations are listed."""
    text = "version: 1\nchannels:\n  his_adt: {type: mllp, listen: 127.0.0.1:2575}\n"
    assert _check(workdir, text + GOOD_TAIL.replace("to: [record_store]", "to: emr")) == [
        "routes.yaml:8: routes[0].to: unknown destination 'emr' (known: record_store)"
    ]


def test_unknown_channel_when_none_are_defined(workdir: Path) -> None:
    """A route from a channel when no channels exist says so."""
    assert _check(workdir, "version: 1\n" + GOOD_TAIL) == [
        "routes.yaml:4: routes[0].from[0]: unknown channel 'his_adt' (none are defined)"
    ]


def test_two_channels_on_one_port(workdir: Path) -> None:
    """The second listener on a host:port is reported, naming the first and its line."""
    assert _check(
        workdir,
        """
        version: 1
        channels:
          his_adt: {type: mllp, listen: 127.0.0.1:2575}
          lis: {type: mllp, listen: "127.0.0.1:2575"}
        """,
    ) == ["routes.yaml:4: channels.lis.listen: 127.0.0.1:2575 is already used by channel 'his_adt' (line 3)"]


def test_wildcard_host_clashes_with_any_host_on_the_port(workdir: Path) -> None:
    """0.0.0.0 takes the port on every interface, including the dashboard's."""
    assert _check(
        workdir,
        """
        version: 1
        engine:
          http: {listen: 127.0.0.1:8080}
        channels:
          his_adt: {type: mllp, listen: 0.0.0.0:8080}
          lis: {type: mllp, listen: 127.0.0.2:2575}
          ris: {type: mllp, listen: 127.0.0.1:2575}
        """,
    ) == ["routes.yaml:5: channels.his_adt.listen: 0.0.0.0:8080 is already used by engine.http (line 3)"]


def test_missing_mapping_file(workdir: Path) -> None:
    """A mapping path that does not exist is reported with the path that was looked for."""
    text = "version: 1\nchannels:\n  his_adt: {type: mllp, listen: 127.0.0.1:2575}\n"
    tail = GOOD_TAIL.replace("mappings/adt.yaml", "mappings/adt_person.yaml")
    assert _check(workdir, text + tail) == [
        "routes.yaml:7: routes[0].mapping: mapping file not found: "
        f"{workdir.resolve() / 'mappings' / 'adt_person.yaml'}"
    ]


def test_yaml_syntax_error_stops_the_check(workdir: Path) -> None:
    """Unparseable YAML gives one problem at PyYAML's line and nothing invented after it."""
    assert _check(workdir, "version: 1\nchannels:\n  his_adt: {type: mllp\nroutes: []\n") == [
        "routes.yaml:4: invalid YAML: expected ',' or '}', but got ':' "
        "(while parsing a flow mapping at line 3)"
    ]


def test_duplicate_yaml_key_is_reported_with_the_rest(workdir: Path) -> None:
    """A duplicate key is one problem among the others, not a stop."""
    assert _check(
        workdir,
        """
        version: 1
        channels:
          his_adt:
            type: mllp
            listen: 127.0.0.1:2575
            listen: 127.0.0.1:2576
            encodng: utf-8
        """,
    ) == [
        "routes.yaml:6: channels.his_adt: duplicate key 'listen' (first at line 5)",
        "routes.yaml:7: channels.his_adt: unknown key 'encodng' (did you mean 'encoding'?)",
    ]


def test_default_urls_are_used_when_variables_are_unset() -> None:
    """`${MCH_BROKER_URL:-memory://}` and `${MCH_DB_URL:-sqlite:///...}` fall back cleanly."""
    assert check_config(FIXTURES / "routes.yaml", {}) == []
    engine = load_settings(FIXTURES / "routes.yaml", {}).engine
    assert (engine.broker, engine.database) == ("memory://", "sqlite:///var/engine.db")


def test_check_mapping_runs_once_per_mapping_file_and_its_errors_are_kept() -> None:
    """Mapping errors (ConfigError or ConfigErrors) join the list; a file shared by two
    routes is checked once."""
    seen: list[Path] = []

    def check_mapping(path: Path, roots: ConfigRoots) -> None:
        seen.append(path)
        if path.name == "adt_person.yaml":
            raise ConfigErrors(
                [ConfigError("adt_person.yaml", 3, "a"), ConfigError("adt_person.yaml", 9, "b")]
            )
        raise ConfigError("oru_result.yaml", 2, "c")

    problems = check_config(FIXTURES / "routes.yaml", {}, check_mapping=check_mapping)
    assert [p.name for p in seen] == ["adt_person.yaml", "oru_result.yaml"]
    assert [str(p) for p in problems] == [
        "adt_person.yaml:3: a",
        "adt_person.yaml:9: b",
        "oru_result.yaml:2: c",
    ]


def test_check_mapping_is_not_called_for_missing_files(workdir: Path) -> None:
    """Only mapping files that exist are handed to the mapping checker."""
    text = "version: 1\nchannels:\n  his_adt: {type: mllp, listen: 127.0.0.1:2575}\n"
    (workdir / "routes.yaml").write_text(text + GOOD_TAIL.replace("adt.yaml", "x.yaml"))
    seen: list[Path] = []
    problems = check_config("routes.yaml", {}, check_mapping=lambda path, roots: seen.append(path))
    assert seen == []
    assert len(problems) == 1


def test_format_problems_sorts_and_counts() -> None:
    """Output is one `file:line: message` per line, by file then line, then a count."""
    text = format_problems(
        [
            ConfigError("routes.yaml", 12, "late"),
            ConfigError("routes.yaml", 3, "early"),
            ConfigError("mappings/his/adt.yaml", 5, "mapping"),
            ConfigError("routes.yaml", None, "whole file"),
        ]
    )
    assert text.splitlines() == [
        "mappings/his/adt.yaml:5: mapping",
        "routes.yaml: whole file",
        "routes.yaml:3: early",
        "routes.yaml:12: late",
        "4 problems in mappings/his/adt.yaml, routes.yaml",
    ]


def test_format_problems_singular_and_empty() -> None:
    """One problem reads `1 problem`; no problems give no text."""
    assert format_problems([ConfigError("routes.yaml", 1, "x")]).splitlines()[-1] == (
        "1 problem in routes.yaml"
    )
    assert format_problems([]) == ""


def test_summarize_counts_sections() -> None:
    """The success line counts channels, routes and destinations."""
    settings = load_settings(FIXTURES / "routes.yaml", {})
    assert summarize(settings, "routes.yaml") == ("routes.yaml: OK (2 channels, 3 routes, 1 destination)")
    assert summarize(settings).startswith(str(FIXTURES.resolve() / "routes.yaml"))


def _limit_memory() -> None:
    """Cap the child at 1 GiB, so a loader that expands aliases fails instead of swapping."""
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


def test_check_command_refuses_an_alias_bomb_in_one_line(tmp_path: Path) -> None:
    """`mch-engine check` on a billion-laughs routes.yaml exits 1 with one `file:line` problem,
    no traceback, in well under a second of its own work."""
    laughs = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    laughs += [f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]" for p, n in zip("abcdefgh", "bcdefghi", strict=True)]
    (tmp_path / "routes.yaml").write_text("version: 1\n" + "\n".join(laughs) + "\n", encoding="utf-8")
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "engine.cli", "--lang", "en", "check", "--config", "routes.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=20,
        preexec_fn=_limit_memory,
    )
    elapsed = time.perf_counter() - started
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "routes.yaml:7: aliases expand to more than 100,000 values; write the values out",
        "1 problem in routes.yaml",
    ]
    assert elapsed < 3  # interpreter start included; the refusal itself takes milliseconds

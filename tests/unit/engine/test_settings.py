"""routes.yaml as typed settings: values, defaults, units and the errors engineers see."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from channels.mllp.settings import MllpChannel
from channels.record_store.settings import RecordStoreDestination
from core.errors import ConfigErrors
from core.settings import Route, Settings, load_settings, parse_duration, parse_listen, parse_size

FIXTURES = Path(__file__).parent / "fixtures"

MINIMAL = """
version: 1
channels:
  his_adt:
    type: mllp
    listen: 127.0.0.1:2575
"""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in a scratch folder so error lines start with plain `routes.yaml`."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _write(folder: Path, text: str) -> Path:
    path = folder / "routes.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def _errors(text: str, folder: Path, env: dict[str, str] | None = None) -> list[str]:
    _write(folder, text)
    with pytest.raises(ConfigErrors) as caught:
        load_settings("routes.yaml", {} if env is None else env)
    return [str(e) for e in caught.value.errors]


def test_example_file_loads_with_every_value() -> None:
    """The fixture routes.yaml loads into typed values with units converted."""
    settings = load_settings(FIXTURES / "routes.yaml", {})
    assert settings.version == 1
    assert settings.engine.broker == "memory://"
    assert settings.engine.database == "sqlite:///var/engine.db"
    assert settings.engine.timezone == "Asia/Shanghai"
    assert settings.engine.tzinfo.key == "Asia/Shanghai"
    assert settings.engine.journal.max_batch == 500
    assert settings.engine.journal.max_wait_ms == 2
    assert settings.engine.http is not None
    assert settings.engine.http.host_port == ("127.0.0.1", 8080)
    his, lis = settings.channels["his_adt"], settings.channels["lis_oru"]
    assert isinstance(his, MllpChannel)
    assert his.host_port == ("127.0.0.1", 2575)
    assert his.max_message_bytes == 1024 * 1024
    assert his.idle_timeout == 300.0
    assert his.ack.mode == "original"
    assert (lis.encoding, lis.max_message_bytes, lis.idle_timeout) == ("gb18030", 524288, 300.0)
    assert lis.ack.mode == "enhanced"
    assert [r.name for r in settings.routes] == ["his-persons", "his-visits", "lis-results"]
    assert settings.retry.tiers == [10.0, 60.0, 600.0, 3600.0]
    assert settings.retry.max_attempts == 8


def test_single_names_become_lists() -> None:
    """`from: x`, `to: y` and `message_type: ADT^A01` are accepted as one-item lists."""
    route = load_settings(FIXTURES / "routes.yaml", {}).routes[1]
    assert (route.from_, route.to, route.message_type) == (
        ["his_adt"],
        ["record_store"],
        ["ADT^A01"],
    )


def test_mapping_path_is_relative_to_the_routes_file(workdir: Path) -> None:
    """Mapping paths resolve against routes.yaml's folder, not the working directory."""
    settings = load_settings(FIXTURES / "routes.yaml", {})
    assert settings.base_dir == FIXTURES.resolve()
    assert settings.routes[0].mapping_path(settings) == (FIXTURES.resolve() / "mappings/his/adt_person.yaml")
    assert settings.routes[0].mapping_path(settings).is_file()


def test_record_store_database_falls_back_to_engine_database() -> None:
    """An empty record_store database means the engine's own database."""
    settings = load_settings(FIXTURES / "routes.yaml", {"MCH_DB_URL": "postgresql+psycopg://e/j"})
    store = settings.destinations["record_store"]
    assert isinstance(store, RecordStoreDestination)
    assert store.database == "postgresql+psycopg://e/j"


def test_record_store_database_from_environment() -> None:
    """MCH_STORE_URL, when set, gives the record store its own database."""
    env = {"MCH_STORE_URL": "postgresql+psycopg://s/store"}
    settings = load_settings(FIXTURES / "routes.yaml", env)
    assert settings.destinations["record_store"].database == "postgresql+psycopg://s/store"


def test_environment_overrides_broker_and_database() -> None:
    """MCH_BROKER_URL and MCH_DB_URL replace the defaults written in the file."""
    env = {"MCH_BROKER_URL": "amqp://mch:pw@mq:5672/mch", "MCH_DB_URL": "postgresql+psycopg://db/j"}
    engine = load_settings(FIXTURES / "routes.yaml", env).engine
    assert (engine.broker, engine.database) == (env["MCH_BROKER_URL"], env["MCH_DB_URL"])


def test_defaults_when_engine_section_is_left_out(workdir: Path) -> None:
    """Without an engine section: memory:// broker, sqlite journal, Asia/Shanghai, mch."""
    settings = load_settings(_write(workdir, MINIMAL), {})
    engine = settings.engine
    assert (engine.broker, engine.database) == ("memory://", "sqlite:///var/engine.db")
    assert (engine.timezone, engine.queue_prefix, engine.http) == ("Asia/Shanghai", "mch", None)
    assert settings.retry.tiers == [10.0, 60.0, 600.0, 3600.0]


def test_left_out_broker_and_database_still_follow_the_environment(workdir: Path) -> None:
    """engine.broker/database left out behave like `${MCH_BROKER_URL:-memory://}` etc."""
    env = {"MCH_BROKER_URL": "amqp://mq/", "MCH_DB_URL": "postgresql+psycopg://db/j"}
    engine = load_settings(_write(workdir, MINIMAL), env).engine
    assert (engine.broker, engine.database) == ("amqp://mq/", "postgresql+psycopg://db/j")


def test_channel_defaults(workdir: Path) -> None:
    """An MLLP channel needs only type and listen; the rest has sensible defaults."""
    channel = load_settings(_write(workdir, MINIMAL), {}).channels["his_adt"]
    assert (channel.encoding, channel.max_message_bytes, channel.idle_timeout) == (
        "utf-8",
        1048576,
        300.0,
    )
    assert channel.ack.mode == "original"


def test_misspelt_key_suggests_the_right_one(workdir: Path) -> None:
    """`listn` is reported on its line with a did-you-mean for `listen`."""
    assert _errors(
        """
        version: 1
        channels:
          his_adt:
            type: mllp
            listn: 127.0.0.1:2575
        """,
        workdir,
    ) == ["routes.yaml:5: channels.his_adt: unknown key 'listn' (did you mean 'listen'?)"]


def test_bad_port_is_reported_on_its_line(workdir: Path) -> None:
    """A port outside 1..65535 names the range on the listen line."""
    assert _errors(
        """
        version: 1
        channels:
          his_adt:
            type: mllp
            listen: 127.0.0.1:70000
        """,
        workdir,
    ) == ["routes.yaml:5: channels.his_adt.listen: port 70000 is out of range 1..65535"]


def test_unknown_channel_type_lists_known_types(workdir: Path) -> None:
    """An unknown channel type names the known ones and the likely intended one."""
    assert _errors(
        """
        version: 1
        channels:
          his_adt:
            type: mlp
            listen: 127.0.0.1:2575
        """,
        workdir,
    ) == [
        "routes.yaml:4: channels.his_adt.type: unknown channel type 'mlp' (known: alerts, db_poll, derived, file, mllp; did you mean 'mllp'?)"
    ]


def test_unknown_destination_type_lists_known_types(workdir: Path) -> None:
    """Destinations are a union on `type` too, with the same kind of message."""
    assert _errors("version: 1\ndestinations:\n  store:\n    type: recordstore\n", workdir) == [
        "routes.yaml:4: destinations.store.type: unknown destination type 'recordstore' "
        "(known: http_out, mllp_out, record_store, wechat; did you mean 'record_store'?)"
    ]


def test_unset_variable_without_default(workdir: Path) -> None:
    """`${MCH_X}` unset is one error naming it, with no follow-on schema error."""
    assert _errors(
        """
        version: 1
        engine:
          broker: ${MCH_BROKER}
        """,
        workdir,
    ) == [
        "routes.yaml:3: engine.broker: environment variable MCH_BROKER is not set "
        "(use ${MCH_BROKER:-default} for a fallback)"
    ]


def test_load_settings_reads_os_environ_by_default(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an explicit env, the process environment is used."""
    monkeypatch.setenv("MCH_TEST_PORT", "2600")
    path = _write(workdir, MINIMAL.replace("127.0.0.1:2575", "127.0.0.1:${MCH_TEST_PORT}"))
    assert load_settings(path).channels["his_adt"].host_port == ("127.0.0.1", 2600)


def test_durations_and_sizes_in_the_file(workdir: Path) -> None:
    """Units in YAML become seconds and bytes; bare numbers are seconds and bytes."""
    path = _write(
        workdir,
        MINIMAL
        + "    max_message_bytes: 2MB\n    idle_timeout: 500ms\n"
        + "retry: {tiers: [1, 90s, 2h], max_attempts: 3}\n",
    )
    settings = load_settings(path, {})
    channel = settings.channels["his_adt"]
    assert (channel.max_message_bytes, channel.idle_timeout) == (2_000_000, 0.5)
    assert settings.retry.tiers == [1.0, 90.0, 7200.0]


def test_bad_duration_and_size_are_explained(workdir: Path) -> None:
    """Unreadable durations and sizes say which forms are accepted."""
    assert _errors(MINIMAL + "    max_message_bytes: 1 megabyte\n    idle_timeout: 5 minutes\n", workdir) == [
        "routes.yaml:6: channels.his_adt.max_message_bytes: invalid size '1 megabyte' "
        "(use bytes, or a number with KB, MB, GB, KiB, MiB or GiB: 512KiB, 1MiB)",
        "routes.yaml:7: channels.his_adt.idle_timeout: invalid duration '5 minutes' "
        "(use seconds, or a number with ms, s, m, h or d: 500ms, 300s, 5m, 1h)",
    ]


def test_zero_size_is_refused(workdir: Path) -> None:
    """max_message_bytes must be positive."""
    assert _errors(MINIMAL + "    max_message_bytes: 0\n", workdir) == [
        "routes.yaml:6: channels.his_adt.max_message_bytes: input should be greater than 0, got 0"
    ]


def test_encoding_is_checked_and_normalised(workdir: Path) -> None:
    """Codec aliases are normalised; an unknown or non-text codec is an error."""
    path = _write(workdir, MINIMAL + "    encoding: GBK\n")
    assert load_settings(path, {}).channels["his_adt"].encoding == "gbk"
    assert _errors(MINIMAL + "    encoding: base64\n", workdir) == [
        "routes.yaml:6: channels.his_adt.encoding: unknown text encoding 'base64' "
        "(for example utf-8, gb18030)"
    ]


def test_bad_timezone_suggests_a_real_one(workdir: Path) -> None:
    """A misspelt time zone is checked against the zone database."""
    assert _errors("version: 1\nengine:\n  timezone: Asia/Shangai\n", workdir) == [
        "routes.yaml:3: engine.timezone: unknown time zone 'Asia/Shangai' (did you mean 'Asia/Shanghai'?)"
    ]


def test_wrong_version_is_refused(workdir: Path) -> None:
    """Only version 1 of the format is read."""
    assert _errors("version: 2\n", workdir) == [
        "routes.yaml:1: version: unsupported version 2 (this engine reads version 1)"
    ]


def test_empty_file_is_an_error(workdir: Path) -> None:
    """An empty routes.yaml is reported, not loaded as nothing."""
    assert _errors("# nothing yet\n", workdir) == ["routes.yaml:1: the file is empty"]


def test_missing_file_is_an_error(workdir: Path) -> None:
    """A routes.yaml that does not exist is reported against its name."""
    with pytest.raises(ConfigErrors) as caught:
        load_settings("nope.yaml", {})
    assert str(caught.value) == "nope.yaml: file not found"


def test_route_name_and_message_type_are_checked(workdir: Path) -> None:
    """Route names use a-z0-9_- and message types TYPE^EVENT, TYPE or *."""
    errors = _errors(
        MINIMAL
        + "routes:\n  - name: His Persons\n    from: his_adt\n"
        + "    message_type: ADT-A04\n    mapping: m.yaml\n    to: []\n",
        workdir,
    )
    assert errors == [
        "routes.yaml:7: routes[0].name: invalid name 'His Persons' (use only a-z, 0-9, '_' and '-')",
        "routes.yaml:9: routes[0].message_type[0]: invalid message type 'ADT-A04' (use "
        "TYPE^EVENT like ADT^A04, TYPE alone like ORU, "
        "a record type like RiskAssessment for a channel that carries records, or *)",
        f"routes.yaml:10: routes[0].mapping: mapping file not found: {workdir.resolve() / 'm.yaml'}",
        "routes.yaml:11: routes[0].to: list should have at least 1 item after validation, not 0",
    ]


def test_route_matches_message_types() -> None:
    """A route takes exact TYPE^EVENT, any event of TYPE, or anything for `*`."""
    route = Route.model_validate(
        {"name": "r", "from": "c", "message_type": ["ADT^A04", "oru"], "mapping": "m", "to": "d"}
    )
    assert route.message_type == ["ADT^A04", "ORU"]
    assert route.matches("ADT^A04")
    assert route.matches("ADT^A04^ADT_A01")
    assert route.matches("ADT", "A04")
    assert not route.matches("ADT^A08")
    assert route.matches("ORU^R01")
    anything = Route(name="r", from_=["c"], mapping="m", to=["d"])
    assert anything.message_type == ["*"]
    assert anything.matches("QBP^Q22")


def test_routes_from_a_channel() -> None:
    """routes_from lists the routes a channel feeds, in file order."""
    settings = load_settings(FIXTURES / "routes.yaml", {})
    assert [r.name for r in settings.routes_from("his_adt")] == ["his-persons", "his-visits"]


def test_schema_describes_every_field() -> None:
    """Every field carries a description, since the docs are generated from the models."""
    schema = Settings.model_json_schema()
    for definition in [schema, *schema["$defs"].values()]:
        for name, prop in definition.get("properties", {}).items():
            assert prop.get("description"), f"{definition['title']}.{name}"
    assert "base_dir" not in schema["properties"]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (300, 300.0),
        (1.5, 1.5),
        ("300", 300.0),
        ("300s", 300.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("500ms", 0.5),
        ("1d", 86400.0),
        (" 2 H ", 7200.0),
    ],
)
def test_parse_duration(text: str | int | float, seconds: float) -> None:
    """Durations accept bare seconds and ms/s/m/h/d units."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["-1", "5min", "", "h", True, -3])
def test_parse_duration_refuses(text: str | int) -> None:
    """Negative, unitless-garbage or boolean durations are refused."""
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        (1048576, 1048576),
        ("1MiB", 1048576),
        ("512KiB", 524288),
        ("2MB", 2_000_000),
        ("1 kb", 1000),
        ("1GiB", 1024**3),
        ("100", 100),
        ("1.5KiB", 1536),
    ],
)
def test_parse_size(text: str | int, size: int) -> None:
    """Sizes accept bytes, KB/MB/GB (1000) and KiB/MiB/GiB (1024)."""
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["1M", "0.5B", "-1", "lots", False])
def test_parse_size_refuses(text: str | int) -> None:
    """Ambiguous units, fractional bytes and non-sizes are refused."""
    with pytest.raises(ValueError, match="invalid size"):
        parse_size(text)


@given(st.integers(min_value=0, max_value=10**6))
def test_size_units_scale(n: int) -> None:
    """A number with a binary unit is that many KiB or MiB."""
    assert parse_size(f"{n}KiB") == n * 1024
    assert parse_size(f"{n} MiB") == n * 1024**2


@pytest.mark.parametrize(
    ("text", "host_port"),
    [
        ("127.0.0.1:2575", ("127.0.0.1", 2575)),
        ("0.0.0.0:1", ("0.0.0.0", 1)),
        (":::2575", ("::", 2575)),
        ("[::1]:65535", ("::1", 65535)),
        ("mllp.example.org:2575", ("mllp.example.org", 2575)),
    ],
)
def test_parse_listen(text: str, host_port: tuple[str, int]) -> None:
    """HOST:PORT splits into host and port, IPv6 bare or bracketed."""
    assert parse_listen(text) == host_port


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("127.0.0.1:0", "port 0 is out of range 1..65535"),
        ("127.0.0.1:65536", "port 65536 is out of range 1..65535"),
        ("host:abc", "port 'abc' is not a number"),
        ("2575", "expected HOST:PORT"),
        (":2575", "expected HOST:PORT"),
        ("bad host:1", "invalid host 'bad host'"),
    ],
)
def test_parse_listen_refuses(text: str, message: str) -> None:
    """Bad ports and hosts are refused with the reason."""
    with pytest.raises(ValueError, match=message):
        parse_listen(text)


def test_journal_commits_at_once_unless_asked_to_linger() -> None:
    """A lone sender must not wait for company: no linger unless routes.yaml sets one."""
    from core.settings import JournalSettings

    assert JournalSettings().max_wait_ms == 0

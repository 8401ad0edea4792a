"""The connector registry: types are known by name, validated by their model, listed by check."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from toy_connectors import TOY_SOURCE, ToyChannel, ToyDestination, toy_connectors

from channels.mllp.settings import MllpChannel
from core import connectors
from core.settings import load_settings
from engine.check import check_config
from engine.cli import main
from engine.reference import render

TOY_ROUTES = """\
version: 1
channels:
  drop:
    type: toy_drop
    messages: ["MSH|^~\\\\&|HIS|FY01|MCH|FY01|20240321083215||ADT^A04|T-1|P|2.5"]
  his_adt:
    type: mllp
    listen: 127.0.0.1:2575
routes:
  - name: persons
    from: [drop, his_adt]
    mapping: mappings/adt.yaml
    to: [kept]
destinations:
  kept: {type: toy_sink, label: first}
"""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Error lines then start with plain `routes.yaml`."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _write(folder: Path, text: str) -> Path:
    """routes.yaml in `folder`, with the (empty) mapping file its route names."""
    (folder / "mappings").mkdir(exist_ok=True)
    (folder / "mappings" / "adt.yaml").write_text("# mapping\n", encoding="utf-8")
    path = folder / "routes.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_second_registration_of_a_name_is_refused() -> None:
    """A type name is registered once: a second `mllp` (or a toy twice) raises and changes nothing."""
    known = connectors.source_type("mllp")
    with pytest.raises(ValueError, match="channel type 'mllp' is already registered"):
        connectors.register_source(connectors.SourceType("mllp", ToyChannel, known.configure, known.build))
    assert connectors.source_type("mllp") is known
    with toy_connectors():
        with pytest.raises(ValueError, match="destination type 'toy_sink' is already registered"):
            connectors.register_destination(
                connectors.DestinationType("toy_sink", ToyDestination, lambda *a: None)
            )
        with pytest.raises(ValueError, match="channel type 'toy_drop'"):
            connectors.register_source(TOY_SOURCE)


def test_loader_validates_a_registered_type_by_its_own_model(workdir: Path) -> None:
    """With the toy types registered, routes.yaml naming them loads into their models."""
    _write(workdir, TOY_ROUTES)
    with toy_connectors():
        settings = load_settings("routes.yaml", env={})
    assert isinstance(settings.channels["drop"], ToyChannel)
    assert isinstance(settings.channels["his_adt"], MllpChannel)
    assert isinstance(settings.destinations["kept"], ToyDestination)
    assert settings.destinations["kept"].label == "first"  # type: ignore[attr-defined]


def test_registered_model_reports_its_own_mistakes_with_lines(workdir: Path) -> None:
    """A key the toy model does not have is an error at its line, like any other type's."""
    _write(workdir, TOY_ROUTES.replace("label: first", "lable: first"))
    with toy_connectors():
        problems = [str(p) for p in check_config("routes.yaml", {})]
    assert problems == ["routes.yaml:15: destinations.kept: unknown key 'lable' (did you mean 'label'?)"]


def test_unregistered_type_is_an_unknown_type_at_its_line(workdir: Path) -> None:
    """Without the toy registration the same file names the line and the known types."""
    _write(workdir, TOY_ROUTES)
    problems = [str(p) for p in check_config("routes.yaml", {})]
    assert problems == [
        "routes.yaml:4: channels.drop.type: unknown channel type 'toy_drop' (known: alerts, db_poll, derived, file, mllp)",
        "routes.yaml:15: destinations.kept.type: unknown destination type 'toy_sink' (known: http_out, mllp_out, record_store, wechat)",
    ]


def test_unknown_type_lists_registered_types_too(workdir: Path) -> None:
    """The list of known types in the error comes from the registry."""
    _write(workdir, "version: 1\nchannels:\n  pacs:\n    type: x\n")
    with toy_connectors():
        problems = [str(p) for p in check_config("routes.yaml", {})]
    assert problems == [
        "routes.yaml:4: channels.pacs.type: unknown channel type 'x' (known: alerts, db_poll, derived, file, mllp, toy_drop)"
    ]


def test_check_types_lists_a_registered_type(capsys: pytest.CaptureFixture[str]) -> None:
    """`check --types` reads the registry: the toy types appear while registered, then go."""
    with toy_connectors():
        assert main(["check", "--types", "--lang", "en"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "channel types: alerts, db_poll, derived, file, mllp, toy_drop",
        "destination types: http_out, mllp_out, record_store, toy_sink, wechat",
    ]
    assert main(["check", "--types", "--lang", "en"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "channel types: alerts, db_poll, derived, file, mllp",
        "destination types: http_out, mllp_out, record_store, wechat",
    ]


def test_check_types_command_names_the_shipped_types_in_chinese() -> None:
    """The command an engineer runs prints the shipped types, in Chinese by default."""
    done = subprocess.run(
        [sys.executable, "-m", "engine.cli", "check", "--types"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert (done.returncode, done.stdout) == (
        0,
        "通道类型：alerts, db_poll, derived, file, mllp\n目的地类型：http_out, mllp_out, record_store, wechat\n",
    ), done.stderr


def test_reference_has_a_section_per_registered_type() -> None:
    """docs/routes.md is generated per type: a registered type adds its own section."""
    with toy_connectors():
        page = render()
    assert "## `channels.<name>` with `type: toy_drop`" in page
    assert "Journals the messages listed here when the engine starts." in page
    assert "## `destinations.<name>` with `type: toy_sink`" in page
    assert "toy_drop" not in render()

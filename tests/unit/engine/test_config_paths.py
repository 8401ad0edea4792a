"""Configuration reads files only below routes.yaml's folder, or below folders allowed in
`engine.allowed_paths`: mapping paths, includes and code tables alike, symlinks followed."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from core.config_paths import ConfigRoots
from core.settings import load_settings
from engine.check import check_config
from transforms.hl7v2 import Message
from transforms.mapping import load_mapping
from transforms.mapping.testing import run_test_file

REFUSED = (
    "is outside the configuration folder; list the folder holding it under engine.allowed_paths to allow it"
)

MSG = "MSH|^~\\&|HIS|FY01|MCHENGINE|FY01|20240321113502||ORU^R01|C1|P|2.4\rOBX|1|NM|HGB^Hb^L||118|g/L"


def _routes(mapping: str, allowed: str = "") -> str:
    return textwrap.dedent(
        f"""\
        version: 1
        engine:
          database: sqlite:///engine.db
          allowed_paths: [{allowed}]
        channels:
          his: {{type: mllp, listen: 127.0.0.1:2575}}
        routes:
          - name: results
            from: his
            mapping: {mapping}
            to: store
        destinations:
          store: {{type: record_store}}
        """
    )


def _mapping(rule: str) -> str:
    return f"records:\n  - type: T\n    record_id: '{{MSH-10}}'\n    fields:\n      hb: {rule}\n"


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A configuration folder `config/` beside a folder `outside/` it may not read by default."""
    (tmp_path / "config" / "mappings").mkdir(parents=True)
    (tmp_path / "outside" / "codes").mkdir(parents=True)
    (tmp_path / "outside" / "codes" / "lis.csv").write_text("local_code,code\nHGB,718-7\n", encoding="utf-8")
    (tmp_path / "outside" / "rule.yaml").write_text("{path: OBX-5}\n", encoding="utf-8")
    (tmp_path / "outside" / "m.yaml").write_text(_mapping("OBX-5"), encoding="utf-8")
    monkeypatch.chdir(tmp_path / "config")
    return tmp_path / "config"


def _check(config: Path, routes: str) -> list[str]:
    (config / "routes.yaml").write_text(routes, encoding="utf-8")
    return [str(p) for p in check_config("routes.yaml", {}, check_mapping=load_mapping)]


def test_a_mapping_path_out_of_the_folder_is_refused_with_its_line(config: Path) -> None:
    """`mapping: ../../etc/passwd` is not opened: one problem at the route's mapping line."""
    assert _check(config, _routes("../../etc/passwd")) == [
        f"routes.yaml:10: routes[0].mapping: mapping file ../../etc/passwd {REFUSED}"
    ]
    assert _check(config, _routes("/etc/passwd")) == [
        f"routes.yaml:10: routes[0].mapping: mapping file /etc/passwd {REFUSED}"
    ]


def test_a_symlink_inside_the_folder_that_leads_out_is_refused(config: Path) -> None:
    """The test is on the resolved path: a link inside the folder does not open a way out."""
    (config / "mappings" / "m.yaml").symlink_to(config.parent / "outside" / "m.yaml")
    assert _check(config, _routes("mappings/m.yaml")) == [
        f"routes.yaml:10: routes[0].mapping: mapping file mappings/m.yaml {REFUSED}"
    ]


def test_an_include_out_of_the_folder_is_refused_with_its_line(config: Path) -> None:
    """`include: ../../etc/passwd` in a mapping names the mapping file and the rule's line."""
    (config / "mappings" / "m.yaml").write_text(_mapping("{include: ../../../etc/passwd}"), encoding="utf-8")
    assert _check(config, _routes("mappings/m.yaml")) == [
        f"{config.resolve() / 'mappings' / 'm.yaml'}:5: included file ../../../etc/passwd {REFUSED}"
    ]


def test_a_code_table_out_of_the_folder_is_refused_with_its_line(config: Path) -> None:
    """`table: ../../etc/passwd` (and a table beside the folder) is refused at its rule."""
    rule = "{path: OBX-3.1, table: ../../../etc/passwd}"
    (config / "mappings" / "m.yaml").write_text(_mapping(rule), encoding="utf-8")
    assert _check(config, _routes("mappings/m.yaml")) == [
        f"{config.resolve() / 'mappings' / 'm.yaml'}:5: code table ../../../etc/passwd {REFUSED}"
    ]


def test_an_allowed_folder_outside_can_be_read(config: Path) -> None:
    """`engine.allowed_paths` opens one folder: its mapping, includes and code tables load and map."""
    (config.parent / "outside" / "m.yaml").write_text(
        _mapping("{include: rule.yaml}").replace(
            "hb: {include: rule.yaml}", "hb: {include: rule.yaml}\n      code: {path: OBX-3.1, table: lis}"
        ),
        encoding="utf-8",
    )
    routes = _routes("../outside/m.yaml", allowed="../outside")
    assert _check(config, routes) == []
    settings = load_settings("routes.yaml", {})
    assert settings.roots == ConfigRoots.of([config, config.parent / "outside"])
    mapping = load_mapping(settings.routes[0].mapping_path(settings), roots=settings.roots)
    (record,) = mapping.apply(Message(MSG))
    assert record.record == {"hb": "118", "code": {"code": "718-7"}}


def test_a_mapping_test_file_cannot_name_a_mapping_out_of_the_folder(config: Path) -> None:
    """`mch-engine mapping test` confines a test file's `mapping:` to the folder it runs in."""
    test_file = config / "mappings" / "m_test.yaml"
    test_file.write_text("mapping: ../../outside/m.yaml\ntests:\n  - {name: a, hl7: x}\n", encoding="utf-8")
    (result,) = run_test_file(test_file)
    assert result.problems == [f"{test_file}:1: mapping file ../../outside/m.yaml {REFUSED}"]

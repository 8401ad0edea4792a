"""The `file` channel's settings: the commented example in the shipped routes.yaml is valid, and
paths resolve as the docs say."""

from __future__ import annotations

from pathlib import Path

import yaml

from channels.file.connector import FileChannel, configure
from core.settings import load_settings
from support import REPO


def test_the_commented_example_in_routes_yaml_is_a_valid_file_channel() -> None:
    lines = (REPO / "routes.yaml").read_text(encoding="utf-8").splitlines()
    start = lines.index("  # lab_files:")
    block = []
    for line in lines[start + 1 :]:
        if not line.startswith("  #   "):
            break
        block.append(line.replace("  #   ", "", 1))
    channel = FileChannel.model_validate(yaml.safe_load("\n".join(block)))
    assert (channel.pattern, channel.encoding, channel.settle, channel.max_file_bytes) == (
        "*.hl7",
        "gb18030",
        2.0,
        16 * 1024 * 1024,
    )


def test_relative_paths_start_at_routes_yaml_and_done_error_inside_the_directory(tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(
        "version: 1\nengine: {database: 'sqlite:///x.db'}\nchannels:\n"
        "  drop: {type: file, path: in/lis, error: /var/tmp/mch-errors}\n",
        encoding="utf-8",
    )
    settings = load_settings(routes, env={})
    config = configure("drop", settings.channels["drop"], settings)
    assert config.directory == tmp_path / "in/lis"
    assert (config.done, config.error, config.processing) == (
        tmp_path / "in/lis/done",
        Path("/var/tmp/mch-errors"),
        tmp_path / "in/lis/processing",
    )

"""Registers the `file` channel type: HL7 files dropped in a directory (channels/file/source.py).

    channels:
      lab_files:
        type: file
        path: /srv/mch/inbox/lis      # relative paths start at routes.yaml's folder
        pattern: "*.hl7"
        encoding: gb18030             # MSH-18 wins when it names a known charset
        poll: 2s
        settle: 2s                    # size and mtime unchanged this long before a file is taken

The watched directory is a data directory, not configuration: it is not bound to
`engine.allowed_paths` (which guards files `check` reads and quotes). The engine touches only
files matching `pattern` in it, and moves them only into its own `processing/`, `done/` and
`error/` folders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import Field

from channels.file.source import FileConfig, FileSource
from channels.intake.examine import Policy
from channels.intake.settings import Hl7Channel, LimitSettings
from core.connectors import ConnectorContext, SourceType, register_source
from core.settings import PositiveDuration, Settings, Size


class FileChannel(Hl7Channel):
    """HL7 v2 files dropped in a directory: each file's messages are journaled, then the file is
    moved to `done/` (or `error/`, with a `.reason` file beside it)."""

    type: Literal["file"] = Field(description="Channel type.")
    path: str = Field(
        min_length=1,
        description="Directory to watch (absolute, or relative to routes.yaml's folder); it must exist "
        "and the engine must be allowed to rename files in it.",
    )
    pattern: str = Field(
        default="*",
        min_length=1,
        description='File names to take (a glob such as "*.hl7"); names starting with "." or ending '
        'in ".tmp" or ".part" are never taken, so a sender writes under such a name and then renames.',
    )
    poll: PositiveDuration = Field(default=2.0, description="How often the directory is looked at.")
    settle: PositiveDuration = Field(
        default=2.0,
        description="A file is taken only once its size and modification time have not changed for "
        "this long (a file still being written is left alone).",
    )
    done: str = Field(
        default="done",
        min_length=1,
        description="Where a file goes once all its messages are journaled (relative to `path`).",
    )
    error: str = Field(
        default="error",
        min_length=1,
        description="Where a file with a rejected message goes, with NAME.reason beside it "
        "(relative to `path`).",
    )
    max_file_bytes: Size = Field(
        default=16 * 1024 * 1024,
        description="Largest file read; a bigger one goes to `error/` unread, its refusal journaled.",
    )


def configure(name: str, channel: FileChannel, settings: Settings) -> FileConfig:
    directory = Path(channel.path).expanduser()
    if not directory.is_absolute():
        directory = settings.base_dir / directory
    tz = ZoneInfo(settings.engine.timezone)
    policy = Policy(name, channel.encoding, "original", tz, channel.limits.limits())
    return FileConfig(
        name=name,
        directory=directory,
        pattern=channel.pattern,
        policy=policy,
        poll=channel.poll,
        settle=channel.settle,
        done=directory / channel.done,
        error=directory / channel.error,
        max_file_bytes=channel.max_file_bytes,
    )


def build(config: FileConfig, context: ConnectorContext) -> FileSource:
    return FileSource(config, context.writer, context.engine_for(context.settings.engine.database))


FILE = register_source(SourceType("file", FileChannel, configure, build, parts=(("limits", LimitSettings),)))

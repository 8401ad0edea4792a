"""`mch-engine backup DIR` and `mch-engine restore DIR/<time>`: the embedded databases'
online backup and its restore into an empty, stopped engine (engine/backup.py).

Both are audited in the engine database (the backup's entry in the database it copies,
the restore's in the database it restored) and log counts and file names only.
Exit 0 done, 1 a restore refused because of what it found (a file changed, an engine not
empty or running), 2 a usage or configuration problem (a PostgreSQL database, no backup).
"""

from __future__ import annotations

import argparse
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import structlog

from core import i18n
from core.i18n import t
from core.masking import masked_url

DEFAULT_CONFIG = "routes.yaml"
EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2

log = structlog.get_logger("engine.backup")

_TEXT: dict[str, tuple[str, str]] = {
    "help_cmd_backup": (
        "在线备份内置（SQLite）数据库：日志库与记录库，不停机",
        "back up the embedded (SQLite) journal and store databases online, without stopping",
    ),
    "help_cmd_restore": (
        "把一份备份恢复到空的、未运行的引擎",
        "restore a backup into an empty engine that is not running",
    ),
    "backup_postgresql": (
        "{setting} 是 PostgreSQL 数据库（{url}）：mch-engine backup 只备份内置 SQLite 数据库。"
        "PostgreSQL 请用 pg_dump 或基础备份（pg_basebackup），步骤见 docs/operations.md「备份与恢复」",
        "{setting} is a PostgreSQL database ({url}): mch-engine backup copies the embedded SQLite "
        "databases only. Back up PostgreSQL with pg_dump or a base backup (pg_basebackup) as "
        'docs/operations.md "Backup and restore" describes',
    ),
    "backup_missing_db": (
        "数据库文件 {path} 不存在（{setting}）：没有可备份的内容",
        "the database file {path} does not exist ({setting}): nothing to back up",
    ),
    "backup_done": ("备份完成：{folder}", "backup written: {folder}"),
    "backup_file": (
        "  {file}（{setting}）：{size} 字节，{counts}",
        "  {file} ({setting}): {size} bytes, {counts}",
    ),
    "restore_no_manifest": (
        "{folder} 中没有 manifest.json：请给出某次备份的文件夹（DIR/<时间>）",
        "{folder} holds no manifest.json: give one backup's folder (DIR/<time>)",
    ),
    "restore_tampered": (
        "拒绝恢复：备份文件缺失或校验和不符：{files}",
        "restore refused: backup files missing or with a wrong checksum: {files}",
    ),
    "restore_no_target": (
        "拒绝恢复：当前配置中没有 {setting}，无法确定 {file} 恢复到哪里",
        "restore refused: this configuration has no {setting}, so {file} has nowhere to go",
    ),
    "restore_not_empty": (
        "拒绝恢复：{path}（{setting}）已有 {n} 条消息或记录；只能恢复到空引擎",
        "restore refused: {path} ({setting}) already holds {n} messages or records; "
        "restore only into an empty engine",
    ),
    "restore_running": (
        "拒绝恢复：引擎正在运行（{processes}）；请先停止引擎",
        "restore refused: an engine is running ({processes}); stop it first",
    ),
    "restore_done": ("已恢复 {folder}（备份于 {at}）：", "restored {folder} (backed up at {at}):"),
    "restore_file": ("  {file} 已复制到 {path}", "  {file} copied to {path}"),
    "action_backup": ("备份", "backup"),
    "action_restore": ("恢复", "restore"),
}
i18n.register(_TEXT)


def add_commands(subparsers: Any) -> None:
    b = subparsers.add_parser("backup", help=i18n.t("help_cmd_backup"))
    b.add_argument("directory", metavar="DIR", help="folder that gets one sub-folder per backup")
    _common(b)
    b.set_defaults(func=cmd_backup)
    r = subparsers.add_parser("restore", help=i18n.t("help_cmd_restore"))
    r.add_argument("folder", metavar="DIR/TIME", help="one backup's folder, with its manifest.json")
    _common(r)
    r.set_defaults(func=cmd_restore)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=DEFAULT_CONFIG, help="routes.yaml to use (default ./routes.yaml)")
    p.add_argument("--as", dest="actor", metavar="NAME", help="your name for the audit log")


def _databases(settings: Any) -> list[Any] | None:
    """The SQLite databases to copy or fill; None (said on stderr) when one is PostgreSQL."""
    from engine.backup import NotSQLite, engine_databases

    try:
        return engine_databases(settings)
    except NotSQLite as exc:
        print(t("backup_postgresql", setting=exc.setting, url=masked_url(exc.url)), file=sys.stderr)
        return None


def cmd_backup(args: argparse.Namespace) -> int:
    from core.settings import load_settings
    from deadletter import audit
    from engine.backup import backup
    from engine.reachability import open_database

    settings = load_settings(args.config)
    databases = _databases(settings)
    if databases is None:
        return EXIT_USAGE
    for db in databases:
        if not db.path.exists():
            print(t("backup_missing_db", path=str(db.path), setting=db.setting), file=sys.stderr)
            return EXIT_USAGE
    engine = open_database(settings.engine.database)
    try:
        audit.ensure_schema(engine)
        actor = audit.current_actor(args.actor)
        target = str(Path(args.directory))
        entry = audit.begin_audit(engine, actor=actor, action="backup", target=target, detail={})
        try:
            folder, manifest = backup(databases, Path(args.directory), _version())
        except BaseException as exc:
            failed = {"error": type(exc).__name__}
            audit.finish_audit(engine, entry, outcome=audit.ABORTED, count=0, detail=failed)
            raise
        summary = _summary(folder, manifest)
        audit.finish_audit(engine, entry, outcome=audit.DONE, count=len(manifest["files"]), detail=summary)
    finally:
        engine.dispose()
    log.info("backup_written", **summary)
    print(t("backup_done", folder=str(folder)))
    for f in manifest["files"]:
        print(t("backup_file", file=f["file"], setting=f["setting"], size=f["size"], counts=_counts(f)))
    return EXIT_OK


def cmd_restore(args: argparse.Namespace) -> int:
    from core.settings import load_settings
    from engine import backup as b

    folder = Path(args.folder)
    if not (folder / b.MANIFEST).is_file():
        print(t("restore_no_manifest", folder=str(folder)), file=sys.stderr)
        return EXIT_USAGE
    settings = load_settings(args.config)
    databases = _databases(settings)
    if databases is None:
        return EXIT_USAGE
    manifest = b.read_manifest(folder)
    targets = {db.setting: db.path for db in databases}
    for entry in manifest["files"]:
        if entry["setting"] not in targets:
            print(t("restore_no_target", setting=entry["setting"], file=entry["file"]), file=sys.stderr)
            return EXIT_USAGE
    refusal = _refusal(folder, manifest, targets)
    if refusal:
        log.warning("restore_refused", folder=folder.name, reason=refusal[0])
        print(refusal[1], file=sys.stderr)
        return EXIT_REFUSED
    for entry in manifest["files"]:
        b.put_in_place(folder, entry, targets[entry["setting"]])
    _audit_restore(settings, args, folder, manifest)
    log.info("backup_restored", folder=folder.name, files=[f["file"] for f in manifest["files"]])
    print(t("restore_done", folder=str(folder), at=manifest["started_at"]))
    for entry in manifest["files"]:
        print(t("restore_file", file=entry["file"], path=str(targets[entry["setting"]])))
    return EXIT_OK


def _refusal(folder: Path, manifest: dict[str, Any], targets: dict[str, Path]) -> tuple[str, str] | None:
    """Why this restore must not happen (a reason for the log, a line for the operator), or None."""
    from engine import backup as b

    bad = b.tampered(folder, manifest)
    if bad:
        return "tampered", t("restore_tampered", files=", ".join(bad))
    running = b.live_processes(targets[b.ENGINE_SETTING])
    if running:
        return "running", t("restore_running", processes=", ".join(running))
    for setting, path in targets.items():
        n = b.holding_data(path)
        if n:
            return "not_empty", t("restore_not_empty", path=str(path), setting=setting, n=n)
    return None


def _audit_restore(settings: Any, args: argparse.Namespace, folder: Path, manifest: dict[str, Any]) -> None:
    from deadletter import audit
    from engine.reachability import open_database

    engine = open_database(settings.engine.database)
    try:
        audit.ensure_schema(engine)
        audit.write_audit(
            engine,
            actor=audit.current_actor(args.actor),
            action="restore",
            target=str(folder),
            count=len(manifest["files"]),
            detail=_summary(folder, manifest),
        )
    finally:
        engine.dispose()


def _summary(folder: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """File names, sizes and counts: nothing a patient could be recognised by."""
    return {
        "folder": folder.name,
        "files": {f["file"]: {"size": f["size"], **f["counts"]} for f in manifest["files"]},
    }


def _counts(entry: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in entry["counts"].items()) or "-"


def _version() -> str:
    try:
        return metadata.version("mch-engine")
    except metadata.PackageNotFoundError:
        return "unknown"

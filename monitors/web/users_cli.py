"""`mch-engine users …`: the dashboard's local users, managed on the engine's host.

    users add NAME --role viewer|operator|admin|auditor [--password-stdin]
    users list [--json]
    users disable NAME
    users passwd NAME [--password-stdin]
    users token NAME        a new API token for scripts (shown once; the old one stops working)

A password is typed twice without echo, or read from the first line of standard input
with `--password-stdin` (for scripts); never a command-line argument, which `ps` and the
shell history would show. Every change is audited with the OS user who made it.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Any

from core import i18n

ROLES = ("viewer", "operator", "admin", "auditor")

_TEXT: dict[str, tuple[str, str]] = {
    "help_cmd_users": ("管理控制台用户（添加、列出、停用、改密码、API 令牌）", "manage dashboard users"),
    "users_password": ("密码：", "Password: "),
    "users_password_again": ("再次输入密码：", "Password again: "),
    "users_password_mismatch": ("两次输入的密码不一致", "the two passwords differ"),
    "users_added": ("已添加用户 {name}（角色 {role}）", "user {name} added (role {role})"),
    "users_disabled": (
        "已停用用户 {name}，其会话和令牌已失效",
        "user {name} disabled; its sessions and token end",
    ),
    "users_passwd_done": ("已修改 {name} 的密码", "password of {name} changed"),
    "users_token_done": (
        "{name} 的新 API 令牌（只显示这一次，旧令牌已失效）：",
        "new API token of {name} (shown this once; the old one no longer works):",
    ),
    "users_none": (
        "还没有用户。用 mch-engine users add NAME --role admin 添加",
        "no users yet: mch-engine users add NAME --role admin",
    ),
    "users_header": ("用户|角色|状态|API 令牌|创建时间", "user|role|state|API token|created"),
    "users_state_active": ("启用", "active"),
    "users_state_disabled": ("已停用", "disabled"),
    "user_bad_name": ("用户名无效：{name}（不能为空、含空格、/ 或 :）", "invalid user name: {name}"),
    "user_exists": ("用户 {name} 已存在", "user {name} already exists"),
    "user_unknown": ("没有用户 {name}", "no user {name}"),
    "user_short_password": ("密码至少 {n} 个字符", "the password needs at least {n} characters"),
    "users_yes": ("有", "yes"),
    "users_no": ("无", "no"),
}
i18n.register(_TEXT)


def add_commands(subparsers: Any, config_arg: Any) -> None:
    top = subparsers.add_parser("users", help=i18n.t("help_cmd_users"))
    top.set_defaults(func=lambda _args: top.print_help() or 2)
    sub = top.add_subparsers(metavar="ACTION")
    add = sub.add_parser("add", help="add a user")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--role", required=True, choices=ROLES)
    _password_arg(add)
    ls = sub.add_parser("list", help="list the users")
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    disable = sub.add_parser("disable", help="refuse a user from now on")
    disable.add_argument("name", metavar="NAME")
    passwd = sub.add_parser("passwd", help="set a user's password")
    passwd.add_argument("name", metavar="NAME")
    _password_arg(passwd)
    token = sub.add_parser("token", help="a new API token for scripts")
    token.add_argument("name", metavar="NAME")
    for p, func in (
        (add, cmd_add),
        (ls, cmd_list),
        (disable, cmd_disable),
        (passwd, cmd_passwd),
        (token, cmd_token),
    ):
        config_arg(p)
        p.set_defaults(func=func)


def _password_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--password-stdin", action="store_true", help="read the password from the first line of stdin"
    )


def cmd_add(args: argparse.Namespace) -> int:
    def body(engine: Any, who: Any) -> None:
        from monitors.web.access import Role
        from monitors.web.users import add_user

        add_user(engine, args.name, Role(args.role), _password(args), by=who)
        print(i18n.t("users_added", name=args.name.strip(), role=args.role))

    return _run(args, body)


def cmd_passwd(args: argparse.Namespace) -> int:
    def body(engine: Any, who: Any) -> None:
        from monitors.web.sessions import close_user_sessions
        from monitors.web.users import set_password

        set_password(engine, args.name, _password(args), by=who)
        close_user_sessions(engine, args.name)
        print(i18n.t("users_passwd_done", name=args.name))

    return _run(args, body)


def cmd_disable(args: argparse.Namespace) -> int:
    def body(engine: Any, who: Any) -> None:
        from monitors.web.sessions import close_user_sessions
        from monitors.web.users import disable_user

        disable_user(engine, args.name, by=who)
        close_user_sessions(engine, args.name)
        print(i18n.t("users_disabled", name=args.name))

    return _run(args, body)


def cmd_token(args: argparse.Namespace) -> int:
    def body(engine: Any, who: Any) -> None:
        from monitors.web.users import new_token

        token = new_token(engine, args.name, by=who)
        print(i18n.t("users_token_done", name=args.name), file=sys.stderr)
        print(token)

    return _run(args, body)


def cmd_list(args: argparse.Namespace) -> int:
    def body(engine: Any, _who: Any) -> None:
        from monitors.web.users import list_users

        found = list_users(engine)
        if args.json:
            for row in found:
                print(json.dumps(row, ensure_ascii=False, default=str))
            return
        if not found:
            print(i18n.t("users_none"))
            return
        print("  ".join(i18n.t("users_header").split("|")))
        for row in found:
            state = i18n.t("users_state_disabled" if row["disabled"] else "users_state_active")
            token = i18n.t("users_yes" if row["has_token"] else "users_no")
            print(f"{row['name']}  {row['role']}  {state}  {token}  {row['created_at']:%Y-%m-%d %H:%M}")

    return _run(args, body)


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass(i18n.t("users_password"))
    if getpass.getpass(i18n.t("users_password_again")) != first:
        raise _Refused(i18n.t("users_password_mismatch"))
    return first


class _Refused(Exception):
    """A change refused, already worded for the operator (exit 1)."""


def _run(args: argparse.Namespace, body: Any) -> int:
    from core.settings import load_settings
    from deadletter.audit import current_actor
    from engine.reachability import open_database, reaching_database
    from monitors.web import sessions, users

    settings = load_settings(args.config)
    url = settings.engine.database
    engine = open_database(url, create=True)  # the first `users add` may come before the first run
    try:
        with reaching_database(url):
            users.ensure_schema(engine)
            sessions.ensure_schema(engine)
            body(engine, current_actor())
        return 0
    except users.UserError as exc:
        print(i18n.t(exc.code, **exc.values), file=sys.stderr)
        return 1
    except _Refused as exc:
        print(exc, file=sys.stderr)
        return 1
    finally:
        engine.dispose()

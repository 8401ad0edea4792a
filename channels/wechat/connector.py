"""Registers the `wechat` destination type (channels/wechat/settings.py).

Credentials come from the environment, never from routes.yaml: `MCH_WECHAT_APPID` and
`MCH_WECHAT_SECRET` (and `MCH_WECHAT_API_BASE`, default WeChat's own). Without them the
destination runs in outbox mode: notices are written to the ledger with status `outbox`
and nothing is sent (`mch-engine wechat outbox` lists them).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine

from channels.wechat import ledger
from channels.wechat.destination import WechatSink
from channels.wechat.sending import NoBindings, Recipients, Sender
from channels.wechat.settings import KeySpec, NoticeRule, WechatDestination
from core.connectors import ConnectorContext, DestinationType, register_destination
from core.errors import StartupError

__all__ = ["DEFAULT_API_BASE", "WECHAT", "Credentials", "credentials"]

DEFAULT_API_BASE = "https://api.weixin.qq.com"

Credentials = tuple[str, str, str]
"""(api base URL, app id, secret)."""

SENDER_FACTORY: Callable[[Credentials, Engine], Sender] | None = None
"""Makes the API client from the credentials and the engine database (its token store)."""
RECIPIENTS_FACTORY: Callable[[Engine], Recipients] = lambda engine: NoBindings()  # noqa: E731
"""Makes the recipients lookup over the bindings table of the engine database."""


def credentials(env: Any = None) -> Credentials | None:
    """The account's credentials from the environment, or None (outbox mode)."""
    env = os.environ if env is None else env
    appid, secret = env.get("MCH_WECHAT_APPID", ""), env.get("MCH_WECHAT_SECRET", "")
    if not appid or not secret:
        return None
    return (env.get("MCH_WECHAT_API_BASE") or DEFAULT_API_BASE, appid, secret)


def prepare(name: str, destination: WechatDestination, context: ConnectorContext) -> None:
    """Create the ledger before any process works."""
    ledger.ensure_schema(context.engine_for(context.settings.engine.database))


def build(name: str, destination: WechatDestination, context: ConnectorContext) -> WechatSink:
    prepare(name, destination, context)
    engine = context.engine_for(context.settings.engine.database)
    found = credentials()
    sender = None
    if found is not None:
        if SENDER_FACTORY is None:
            raise StartupError(
                f"destinations.{name}: MCH_WECHAT_APPID and MCH_WECHAT_SECRET are set but this build has "
                "no WeChat API client; unset them to run in outbox mode"
            )
        sender = SENDER_FACTORY(found, engine)
    sink = WechatSink(
        name,
        destination,
        engine,
        context.settings.engine.tzinfo,
        sender=sender,
        recipients=RECIPIENTS_FACTORY(engine),
    )
    sink.start()
    return sink


WECHAT = register_destination(
    DestinationType(
        "wechat",
        WechatDestination,
        build,
        prepare,
        parts=(("notices[]", NoticeRule), ("notices[].keys.<key>", KeySpec)),
    )
)

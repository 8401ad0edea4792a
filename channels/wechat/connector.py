"""Registers the `wechat` destination type (channels/wechat/settings.py).

Credentials come from the environment, never from routes.yaml: `MCH_WECHAT_APPID` and
`MCH_WECHAT_SECRET` (and `MCH_WECHAT_API_BASE`, default WeChat's own). Without them the
destination runs in outbox mode: notices are written to the ledger with status `outbox`
and nothing is sent (`mch-engine wechat outbox` lists them).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from channels.wechat import bindings, ledger
from channels.wechat.api import WechatApi
from channels.wechat.destination import WechatSink
from channels.wechat.sending import Sender
from channels.wechat.settings import EducationKey, KeySpec, NoticeRule, WechatDestination
from channels.wechat.tokens import TokenStore
from core.connectors import ConnectorContext, DestinationType, register_destination
from core.secrets import secret_environment

__all__ = ["DEFAULT_API_BASE", "WECHAT", "Credentials", "credentials"]

DEFAULT_API_BASE = "https://api.weixin.qq.com"

Credentials = tuple[str, str, str]
"""(api base URL, app id, secret)."""


def api_client(found: Credentials, engine: Engine) -> Sender:
    """The WeChat API client, its token kept in the engine database for every process."""
    base, appid, secret = found
    tokens = TokenStore(engine)
    tokens.prepare()
    return WechatApi(base, appid, secret, tokens)


class BoundRecipients:
    """Recipients from the bindings table of the engine database (channels/wechat/bindings.py)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def openids_for(self, person_ref: dict[str, Any]) -> list[str]:
        with self.engine.connect() as conn:
            return bindings.openids_for(conn, person_ref)

    def staff_openids(self, role: str) -> list[str]:
        with self.engine.connect() as conn:
            return bindings.staff_openids(conn, role)


def credentials(env: Any = None) -> Credentials | None:
    """The account's credentials from the environment, or None (outbox mode)."""
    env = secret_environment(env)  # `X_FILE` for an unset `X` (core/secrets.py)
    appid, secret = env.get("MCH_WECHAT_APPID", ""), env.get("MCH_WECHAT_SECRET", "")
    if not appid or not secret:
        return None
    return (env.get("MCH_WECHAT_API_BASE") or DEFAULT_API_BASE, appid, secret)


def prepare(name: str, destination: WechatDestination, context: ConnectorContext) -> None:
    """Create the ledger and the bindings table before any process works."""
    engine = context.engine_for(context.settings.engine.database)
    ledger.ensure_schema(engine)
    bindings.ensure_schema(engine)


def build(name: str, destination: WechatDestination, context: ConnectorContext) -> WechatSink:
    prepare(name, destination, context)
    engine = context.engine_for(context.settings.engine.database)
    found = credentials()
    sender = None
    if found is not None:
        sender = api_client(found, engine)
    sink = WechatSink(
        name,
        destination,
        engine,
        context.settings.engine.tzinfo,
        sender=sender,
        recipients=BoundRecipients(engine),
        appid=found[1] if found else None,
    )
    sink.start()
    if destination.education:
        sink.education = education_schedule(sink, destination, context)
        # Of two servers, only the leader sends education notices (the deliver workers run on both).
        context.when_leading(sink.education.start, sink.education.close)
    return sink


def education_schedule(sink: WechatSink, destination: WechatDestination, context: ConnectorContext) -> Any:
    """The destination's education schedule, reading the record store's database (the one
    `education_store` names, else the first record store of routes.yaml)."""
    from channels.record_store import schema as store_schema
    from channels.wechat.catalogue import load_catalogue
    from channels.wechat.education_schedule import EducationSchedule

    settings = context.settings
    assert destination.education is not None
    stores = [
        (name, d)
        for name, d in settings.destinations.items()
        if d.type == "record_store" and (destination.education_store in (None, name))
    ]
    url = stores[0][1].database_url if stores else None
    store = context.engine_for(url or settings.engine.database)
    store_schema.ensure_schema(store)
    catalogue = load_catalogue(destination.file_path(destination.education, settings))
    return EducationSchedule(sink, catalogue, store)


WECHAT = register_destination(
    DestinationType(
        "wechat",
        WechatDestination,
        build,
        prepare,
        parts=(
            ("notices[]", NoticeRule),
            ("notices[].keys.<key>", KeySpec),
            ("education_keys.<key>", EducationKey),
        ),
    )
)

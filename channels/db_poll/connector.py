"""Registers the `db_poll` channel type: a HIS view or query polled through SQL."""

from __future__ import annotations

from channels.db_poll.reader import dialect_of
from channels.db_poll.settings import DbPollChannel
from channels.db_poll.source import DbPollConfig, DbPollSource
from channels.db_poll.sql import PollQueries
from core.connectors import ConnectorContext, SourceType, register_source
from core.settings import Settings


def configure(name: str, channel: DbPollChannel, settings: Settings) -> DbPollConfig:
    """A channel's poll settings as routes.yaml (`settings`) gives them."""
    url = channel.url.strip()
    dialect = dialect_of(url, channel.dialect) if url else "sqlite"
    queries = PollQueries.build(
        dialect,
        view=channel.view,
        query=channel.query,
        watermark=channel.watermark,
        key=channel.key,
        limit=channel.batch,
        rowversion=channel.rowversion,
    )
    return DbPollConfig(
        name=name,
        url=url,
        dialect=dialect,
        sender=f"{name}/{channel.source_name}",
        queries=queries,
        watermark=channel.watermark,
        key=channel.key,
        every=channel.every,
        batch=channel.batch,
        look_back=channel.look_back,
        timeout=channel.timeout,
        tz=settings.engine.tzinfo,
    )


def build(config: DbPollConfig, context: ConnectorContext) -> DbPollSource:
    return DbPollSource(config, context.writer, context.engine_for(context.settings.engine.database))


DB_POLL = register_source(SourceType("db_poll", DbPollChannel, configure, build))

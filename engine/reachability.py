"""A database or broker the engine cannot reach, said in one line a person can act on.

At 3 a.m. a traceback of a connection refused helps nobody. Every command that opens a
database or the broker goes through `open_database` / `probe_broker` (or wraps its work
in `reaching_database`), so a closed port, a wrong password or a missing SQLite file
becomes `Unreachable`: what could not be reached, its URL with the password masked,
and what to check. It is a `StartupError`, so `main()` prints it and exits 2.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from core.database import make_engine
from core.errors import StartupError
from core.i18n import t
from core.masking import mask_text
from core.masking import masked_url as masked

if TYPE_CHECKING:
    from core.settings import Settings

DETAIL_WIDTH = 160  # characters of the driver's own words kept in the line


class Unreachable(StartupError):
    """A database or broker could not be reached; the text is the operator's whole line."""


def _detail(exc: BaseException) -> str:
    """The driver's words, on one line, shortened; never a statement's values."""
    cause = getattr(exc, "orig", None) or exc
    words = " ".join(str(cause).split()) or type(cause).__name__
    words = mask_text(words)
    return words if len(words) <= DETAIL_WIDTH else words[: DETAIL_WIDTH - 1] + "…"


def database_unreachable(url: str, setting: str, exc: BaseException) -> Unreachable:
    path = _sqlite_path(url)
    if path is not None:
        return Unreachable(
            t("db_path_unusable", path=str(path), error=_detail(exc), setting=setting, url=masked(url))
        )
    return Unreachable(t("db_unreachable", url=masked(url), error=_detail(exc), setting=setting))


def _sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def open_database(url: str, setting: str = "engine.database", *, create: bool = False) -> Engine:
    """An engine whose database answers. Without `create`, a SQLite file that does not
    exist is an error (a listing would otherwise show an empty, new database)."""
    path = _sqlite_path(url)
    if path is not None and not create and not path.exists():
        raise Unreachable(t("db_file_missing", path=str(path), url=masked(url), setting=setting))
    try:
        engine = make_engine(url)
    except OSError as exc:  # the SQLite folder cannot be created
        raise database_unreachable(url, setting, exc) from None
    with reaching_database(url, setting), engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    return engine


@contextmanager
def reaching_database(url: str, setting: str = "engine.database") -> Iterator[None]:
    """Inside: a connection failure is `Unreachable` naming this URL."""
    try:
        yield
    except DBAPIError as exc:
        if exc.connection_invalidated or _is_connect_error(exc):
            raise database_unreachable(url, setting, exc) from None
        raise
    except BrokenPipeError:  # output printed inside the block met a closed pipe: not the database
        raise
    except OSError as exc:
        raise database_unreachable(url, setting, exc) from None


def _is_connect_error(exc: DBAPIError) -> bool:
    from sqlalchemy.exc import InterfaceError, OperationalError

    return isinstance(exc, OperationalError | InterfaceError)


def probe_broker(url: str, *, timeout: float = 5.0) -> None:
    """Connect to the broker once; `memory://` is in this process and always there."""
    if url.startswith("memory://"):
        return
    from kombu import Connection

    conn = Connection(url, connect_timeout=timeout)
    try:
        conn.ensure_connection(max_retries=1, timeout=timeout)
    except Exception as exc:  # kombu wraps socket, auth and DNS errors alike
        raise Unreachable(t("broker_unreachable", url=masked(url), error=_detail(exc))) from None
    finally:
        conn.release()


def probe_services(settings: Settings) -> None:
    """Before `run` starts anything: the journal database, each record store's and the
    broker answer, or the first that does not is one `Unreachable` line."""
    urls = {settings.engine.database: "engine.database"}
    for name, d in settings.destinations.items():
        if d.database_url:
            urls.setdefault(d.database_url, f"destinations.{name}.database")
    for url, setting in urls.items():
        open_database(url, setting, create=True).dispose()
    probe_broker(settings.engine.broker)

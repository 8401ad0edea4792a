"""Rendering a dashboard page: the one Jinja2 environment over monitors/web/templates, the
reader's language and what every template may call (texts, statuses, local times, the
signed-in user's permissions, the session's CSRF token).

The language is the request's, never the process's (core/i18n.py's `set_language` is the
CLI's): `?lang=en|zh` chooses and is kept in a cookie; without either it is Chinese.
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from core import i18n
from engine import deadletter_cli as _action_texts  # noqa: F401  (the audit actions' texts)
from engine.operator_time import local_time
from monitors import status_command as _status_texts  # noqa: F401  (its problem texts)
from monitors.web import texts as _texts  # noqa: F401  (registers the dashboard's texts)
from monitors.web.access import Permission, current_user

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")

LANG_COOKIE = "mch_lang"
LANGUAGES = ("zh", "en")
_YEAR = 365 * 24 * 3600


def language(request: Request) -> str:
    """`?lang=` first, then the cookie, else Chinese."""
    asked = request.query_params.get("lang") or request.cookies.get(LANG_COOKIE) or "zh"
    return asked if asked in LANGUAGES else "zh"


def render(
    request: Request,
    template: str,
    context: dict[str, Any],
    *,
    tz: tzinfo,
    status_code: int = 200,
) -> Response:
    """The page in the reader's language, times in the engine's zone `tz`, with the user
    and the session's CSRF token for its forms; a `?lang=` choice is kept for the next pages."""
    lang = language(request)
    user = current_user(request)
    session = request.scope.get("mch_session")

    def text(key: str, **values: object) -> str:
        return i18n.t_in(lang, key, **values)

    def problem(value: str) -> str:
        """A status problem (`key:subject`) as `mch-engine status` words it."""
        key, _, subject = value.partition(":")
        try:
            return i18n.t_in(lang, f"status_cmd_{key}", subject=subject)
        except KeyError:
            return value

    def when(value: datetime | str | None) -> str:
        return local_time(value, tz)

    def may(permission: str) -> bool:
        return user is not None and user.may(Permission(permission))

    values = {
        "lang": lang,
        "other_lang": "en" if lang == "zh" else "zh",
        "user": user,
        "t": text,
        "status": lambda value: i18n.t_in_or(lang, f"status_{value}", value),
        "action": lambda value: i18n.t_in_or(lang, f"action_{value}", value),
        "when": when,
        "problem": problem,
        "may": may,
        "csrf_token": session.csrf if session else "",
        **context,
    }
    response = templates.TemplateResponse(request, template, values, status_code=status_code)
    if request.query_params.get("lang") in LANGUAGES:
        response.set_cookie(LANG_COOKIE, lang, max_age=_YEAR, httponly=True, samesite="strict", path="/")
    return response

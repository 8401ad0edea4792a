"""Rendering a dashboard page: the Jinja2 templates, the reader's language and what every
template may call (texts, statuses, local times, the signed-in user's permissions).

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
from engine.operator_time import local_time
from monitors import status_command as _status_texts  # noqa: F401  (its problem texts)
from monitors.web.access import Permission, current_user
from monitors.web.pages import texts as _texts  # noqa: F401  (registers the pages' texts)

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent.parent / "templates")
LANG_COOKIE = "lang"
LANGUAGES = ("zh", "en")


def language(request: Request) -> str:
    """`?lang=` first, then the cookie, else Chinese."""
    asked = request.query_params.get("lang") or request.cookies.get(LANG_COOKIE) or "zh"
    return asked if asked in LANGUAGES else "zh"


def render(
    request: Request, template: str, tz: tzinfo, context: dict[str, Any], *, status_code: int = 200
) -> Response:
    """The page in the reader's language; a `?lang=` choice is kept for the next pages."""
    lang = language(request)
    user = current_user(request)

    def text(key: str, **values: object) -> str:
        return i18n.t_in(lang, key, **values)

    def status(value: str) -> str:
        return i18n.status_in(lang, value)

    def when(value: datetime | str | None) -> str:
        return local_time(value, tz)

    def problem(value: str) -> str:
        """A status problem (`key:subject`) as `mch-engine status` words it."""
        key, _, subject = value.partition(":")
        try:
            return i18n.t_in(lang, f"status_cmd_{key}", subject=subject)
        except KeyError:
            return value

    def may(permission: str) -> bool:
        return user is not None and user.may(Permission(permission))

    values = {
        "lang": lang,
        "other_lang": "en" if lang == "zh" else "zh",
        "user": user,
        "t": text,
        "status": status,
        "when": when,
        "problem": problem,
        "may": may,
        "csrf_token": request.scope.get("csrf_token", ""),
        **context,
    }
    response = TEMPLATES.TemplateResponse(request, template, values, status_code=status_code)
    if request.query_params.get("lang") in LANGUAGES:
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, httponly=True, samesite="lax")
    return response

"""Server-rendered pages: the Jinja2 templates under monitors/web/templates and the
visitor's language (Simplified Chinese unless `?lang=en` or the remembered cookie says
English; `?lang=zh` switches back)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from core import i18n
from monitors.web.access import current_user

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")

LANG_COOKIE = "mch_lang"
LANGUAGES = ("zh", "en")
_YEAR = 365 * 24 * 3600


def language(request: Request) -> str:
    asked = request.query_params.get("lang")
    if asked in LANGUAGES:
        return asked
    kept = request.cookies.get(LANG_COOKIE)
    return kept if kept in LANGUAGES else "zh"


def text(key: str, lang: str, **values: object) -> str:
    """A catalogue text (core/i18n) in this request's language, whatever the process's."""
    zh, en = i18n.catalogue_entry(key)
    return (en if lang == "en" else zh).format(**values)


def render(request: Request, name: str, values: dict[str, Any], status_code: int = 200) -> Response:
    """The template with the language, the user and the CSRF token; the language remembered."""
    lang = language(request)
    session = request.scope.get("mch_session")
    context = {
        "request": request,
        "lang": lang,
        "t": lambda key, **v: text(key, lang, **v),
        "user": current_user(request),
        "csrf_token": session.csrf if session else "",
        **values,
    }
    response = templates.TemplateResponse(request, name, context, status_code=status_code)
    if request.query_params.get("lang") in LANGUAGES:
        response.set_cookie(LANG_COOKIE, lang, max_age=_YEAR, httponly=True, samesite="strict", path="/")
    return response

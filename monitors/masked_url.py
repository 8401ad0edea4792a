"""A service URL fit to print or log: the password replaced by `***`."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def masked_url(url: str) -> str:
    """`amqp://mch:secret@rabbit:5672/mch` → `amqp://mch:***@rabbit:5672/mch`."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unreadable URL>"
    if parts.password is None:
        return url
    user, _, host = parts.netloc.rpartition("@")
    name = user.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{name}:***@{host}"))

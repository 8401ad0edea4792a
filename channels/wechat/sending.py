"""What the `wechat` destination needs from the WeChat API client and from the bindings,
as two small protocols: the API client (channels/wechat/api.py) and the bindings table
(channels/wechat/bindings.py) are wired to them in channels/wechat/connector.py.

A `Sender` raises the errors of channels/wechat/errors.py: `Undeliverable` means this
person cannot get this notice (not following, no consent, bad openid): recorded with the
reason, never retried. A `PermanentDeliveryError` (WeChat refused the data, 47003; a
template id refused twice, 40037) is a dead letter; a `TransientDeliveryError` is tried
again, and one carrying `until` (the daily quota, 45009) pauses sending until then.
"""

from __future__ import annotations

from typing import Any, Protocol

from channels.wechat.errors import Undeliverable

__all__ = ["NoBindings", "Recipients", "Sender", "undeliverable_reason"]


class Sender(Protocol):
    def send_template(
        self, openid: str, template_id: str, data: dict[str, str], url: str | None, client_msg_id: str
    ) -> str:
        """Send one template message; WeChat's msgid."""
        ...


class Recipients(Protocol):
    def openids_for(self, person_ref: dict[str, Any]) -> list[str]:
        """The subscribed openids bound to the identifiers a record's `person` carries."""
        ...

    def staff_openids(self, role: str) -> list[str]:
        """The subscribed openids of the staff bound with `role`."""
        ...


class NoBindings:
    """Recipients before any binding exists: nobody (notices are recorded as unbound)."""

    def openids_for(self, person_ref: dict[str, Any]) -> list[str]:
        return []

    def staff_openids(self, role: str) -> list[str]:
        return []


def undeliverable_reason(exc: BaseException) -> str | None:
    """`not_following (43004)` for an error that means the person cannot get it, else None."""
    return f"{exc.reason} ({exc.code})" if isinstance(exc, Undeliverable) else None

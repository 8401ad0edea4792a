"""The MLLP source's decision for one frame: the intake's verdict, answered with an HL7 ACK."""

from __future__ import annotations

from channels.intake.examine import Policy, Verdict, error_location
from channels.intake.examine import examine as examine_message
from channels.intake.examine import reject as reject_message
from channels.mllp.ack import ack_code, build_ack
from core.errors import ParseError
from transforms.hl7v2 import MshHeader

__all__ = ["answer", "examine", "reject"]


def answer(policy: Policy, msh: MshHeader | None, err: ParseError | None) -> tuple[str | None, str | None]:
    """The ACK code and text for one message (None, None: enhanced mode says no ACK)."""
    code = ack_code(err is None, msh, policy.ack_mode)
    if not code:
        return None, None
    if err is None:
        return code, build_ack(msh, code)
    return code, build_ack(msh, code, text=str(err), error_code=err.code, error_location=error_location(err))


def examine(payload: bytes, policy: Policy, peer: str = "") -> list[Verdict]:
    """Entries for one frame, each with the ACK to send (see `channels.intake.examine`)."""
    return examine_message(payload, policy, peer, answer)


def reject(payload: bytes, policy: Policy, reason: str, peer: str = "") -> Verdict:
    """A frame refused before it could be read (oversize, truncated): AR, raw kept."""
    return reject_message(payload, policy, reason, peer, answer)

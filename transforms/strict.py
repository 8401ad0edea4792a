"""Strict structure validation with hl7apy, for channels that ask for it (`strict: true`).

hl7apy knows each HL7 version's message structures (segment order, groups,
cardinality, data types). It costs tens of milliseconds a message, so it runs in
the transform stage and only where a channel wants it; a message that fails is
journaled as failed with hl7apy's reason, never silently accepted.
"""

from __future__ import annotations

from core.errors import ParseError


def check_structure(text: str) -> None:
    """Raise ParseError naming what hl7apy found wrong with the message's structure."""
    from hl7apy.consts import VALIDATION_LEVEL
    from hl7apy.parser import parse_message

    try:
        message = parse_message(
            text.replace("\n", "\r"), validation_level=VALIDATION_LEVEL.STRICT, find_groups=True
        )
        message.validate()
    except Exception as exc:  # hl7apy raises many unrelated types
        reason = str(exc) or type(exc).__name__
        raise ParseError(f"strict validation ({type(exc).__name__}): {reason}", code="100") from None

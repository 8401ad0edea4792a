"""What a receiver said, as a dead letter's reason quotes it: one line, short, masked.

A receiver's error text is usually about the message, not the patient, but it may echo an
ID-card or mobile number, so it is masked as a log line would be.
"""

from __future__ import annotations

from core.masking import mask_text

QUOTED_CHARS = 200  # of the receiver's words kept


def quoted(text: str) -> str:
    """`: "the receiver's words"`, or nothing when it said nothing."""
    words = " ".join(text.split())
    if not words:
        return ""
    if len(words) > QUOTED_CHARS:
        words = words[: QUOTED_CHARS - 1] + "…"
    return f': "{mask_text(words)}"'

"""The engine: runtime, journal and the operator's commands (the top layer, design.md).

Importing the package registers its operator-facing texts (engine/texts.py)."""

from engine import texts as _texts

__all__ = ["_texts"]

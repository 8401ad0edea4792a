"""The engine: runtime, journal writer and the operator's commands (the top layer, design.md).

Importing the package registers its operator-facing texts (engine/texts.py)."""

from engine import texts as texts

"""Which files configuration may make the engine read: those below routes.yaml's folder, or
below a folder the operator allowed in `engine.allowed_paths`.

A mapping path, an `include:` or a code table is text that whoever edits configuration
writes; unbounded, `../../etc/passwd` is opened and `check` repeats what it found in its
error lines. Paths are resolved (`..` and symlinks followed) before they are compared, so a
link inside the folder cannot lead outside it either.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ConfigRoots"]


@dataclass(frozen=True, slots=True)
class ConfigRoots:
    """The folders configuration files may be read from, resolved."""

    roots: tuple[Path, ...]

    @classmethod
    def of(cls, folders: Iterable[Path]) -> ConfigRoots:
        return cls(tuple(dict.fromkeys(Path(f).expanduser().resolve() for f in folders)))

    def contains(self, path: Path) -> bool:
        """Whether `path`, once resolved, lies in one of the folders."""
        real = path.resolve()
        return any(real.is_relative_to(root) for root in self.roots)

    def refusal(self, kind: str, reference: str, path: Path) -> str | None:
        """Why `path` (written as `reference`) may not be read, or None when it may."""
        if self.contains(path):
            return None
        return (
            f"{kind} {reference} is outside the configuration folder; "
            "list the folder holding it under engine.allowed_paths to allow it"
        )

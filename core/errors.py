"""Every failure a user can act on, as one class each.

    MchError
    ├── ConfigError(file, line, message)       routes.yaml, mapping files, code tables
    │   └── ConfigErrors(errors)               several at once, for `mch-engine check`
    ├── StartupError                           a port taken, a database unreachable at start
    ├── InputError                             the message itself is bad: NAK or dead letter
    │   ├── FrameError                         MLLP framing: oversize, truncated
    │   ├── DecodeError(encoding, offset)      bytes do not decode with the declared charset
    │   ├── ParseError(segment, field, rule)   MSH missing or unreadable, required field empty
    │   ├── MappingError(path, value, rule)    a mapping rule failed on this message
    │   └── RecordValidationError              the mapped record breaks its model's rules
    └── DeliveryError                          a destination could not take a record
        ├── TransientDeliveryError             try again later (broker or database away)
        └── PermanentDeliveryError             will fail again: dead letter

Each renders as one line (`str(err)`) fit for the CLI, the journal and the dashboard.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "ConfigErrors",
    "DecodeError",
    "DeliveryError",
    "FrameError",
    "InputError",
    "MappingError",
    "MchError",
    "ParseError",
    "PermanentDeliveryError",
    "RecordValidationError",
    "StartupError",
    "TransientDeliveryError",
]


class MchError(Exception):
    """Root of the engine's own errors."""


class ConfigError(MchError):
    """A problem in a configuration file, located to its line."""

    def __init__(self, file: str, line: int | None, message: str) -> None:
        self.file = file
        self.line = line
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.message}"


class ConfigErrors(MchError):
    """All the problems found in one pass, so an engineer fixes them in one go."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


class StartupError(MchError):
    """The engine cannot start as configured; the text says what to change."""


class InputError(MchError):
    """The message is at fault, not the engine: answer with a NAK or dead-letter it."""


class FrameError(InputError):
    """MLLP framing was broken (oversize, truncated)."""


class DecodeError(InputError):
    """Bytes that do not decode with the charset the message or channel declares."""

    def __init__(self, encoding: str, offset: int, detail: str = "") -> None:
        self.encoding = encoding
        self.offset = offset
        self.detail = detail
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"bytes are not valid {self.encoding} (first invalid byte at offset {self.offset})"
        return f"{text}; {self.detail}" if self.detail else text


class CharsetMismatch(DecodeError):
    """MSH-18 declares a charset the bytes decode in but plainly are not (they would be mojibake)."""

    def __init__(self, declared: str, offset: int, actual: str) -> None:
        self.declared = declared
        self.actual = actual  # what the bytes are, in words
        super().__init__(declared, offset)

    def __str__(self) -> str:
        return f"declared {self.declared!r}, but {self.actual}"


class ParseError(InputError):
    """The HL7 structure cannot be read where the engine needs it."""

    def __init__(
        self, message: str, *, segment: str = "MSH", field: int | None = None, code: str = "207"
    ) -> None:
        self.segment = segment
        self.field = field
        self.code = code  # HL7 table 0357 error code for the ERR segment
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.segment}-{self.field}" if self.field else self.segment
        return f"{where}: {self.message}"


class MappingError(InputError):
    """A mapping rule failed on a message: names the mapping file and line, path, value, rule."""

    def __init__(self, *, mapping: str, line: int | None, path: str, value: object, rule: str) -> None:
        self.mapping = mapping
        self.line = line
        self.path = path
        self.value = value
        self.rule = rule
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.mapping}:{self.line}" if self.line else self.mapping
        return f"{where}: {self.path} = {self.value!r}: {self.rule}"


class RecordValidationError(InputError):
    """A mapped record that breaks its canonical model's rules; one line per problem."""


class DeliveryError(MchError):
    """A destination could not take a record."""


class TransientDeliveryError(DeliveryError):
    """Worth trying again later: the other side was away or busy."""


class PermanentDeliveryError(DeliveryError):
    """Will fail again whatever we do: goes to dead letters."""

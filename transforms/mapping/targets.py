"""What `mapping explain` knows about one HL7 field a mapping reads: the record field it may
fill, and what has to hold first (a `when:`/`where` condition, a code table that lists the code).

Recorded by the compiler while it compiles a file, so the explanation follows the mapping
as written and never needs a message's values.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Target:
    field: str  # record field, e.g. LabResult.observations.standard_code
    source: str  # the path as the mapping writes it, e.g. OBX-3.1
    conditions: tuple[str, ...] = ()  # every `when:` / `where` around the rule, as written
    table: str | None = None  # code table the value is looked up in
    table_codes: frozenset[str] | None = None  # the codes that table gives a result for
    obx_code: str | None = None  # `{obx: CODE}`: only the OBX whose OBX-3.1 is this code

    def fills(self, code: str) -> bool:
        """Whether a looked-up value gives a result (always, without a table)."""
        return self.table_codes is None or code.strip() in self.table_codes

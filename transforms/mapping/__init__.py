"""The mapping language: compile YAML mapping files, apply them, test them, explain them."""

from transforms.mapping.compiler import Ctx, MappedRecord, Mapping, load_mapping

__all__ = ["Ctx", "MappedRecord", "Mapping", "load_mapping"]

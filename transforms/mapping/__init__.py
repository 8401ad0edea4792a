"""The mapping language: compile YAML mapping files, apply them, test them, explain them."""

from transforms.mapping.compiler import MappedRecord, Mapping, load_mapping
from transforms.mapping.getters import Ctx

__all__ = ["Ctx", "MappedRecord", "Mapping", "load_mapping"]

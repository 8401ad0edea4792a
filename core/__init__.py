"""The base layer: errors, clock, configuration loading, the connector registry and the
types a source hands the journal. It imports nothing of ours but itself (design.md)."""

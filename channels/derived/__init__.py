"""The `derived` channel: records the record store derived (suggested risk gradings, PMTCT
cases), relayed from its `derived_outbox` into the journal (docs/connectors.md).

`settings` (the routes.yaml model), `relay` (an outbox row as journal bytes), `source` (the
relaying thread), `connector` (registration under `type: derived`).
"""

"""The `db_poll` channel: rows of a HIS database view, polled and journaled (docs/connectors.md).

`settings` (the routes.yaml model), `sql` (the SELECTs per dialect, T-SQL included),
`rows` (a row as journal bytes; cursor values), `cursor` (the position in the engine's
database), `reader` (SQLAlchemy or pyodbc), `source` (the polling thread), `connector`
(registration under `type: db_poll`).
"""

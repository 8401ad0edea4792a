"""The engine's own alert rules over its numbers, for hospitals that run no Prometheus
(docs/monitoring.md). The same rules, for those that do: monitors/prometheus/alerts.yml.

`rules` (each rule as data: key, severity, condition over an EngineStatus, subjects),
`evaluate` (status + open alerts + clock → transitions, pure), `store` (the `alerts` table:
episodes that survive a restart; what the dashboard reads), `record` (a transition as an
`EngineAlert` record the routes send on), `source` and `connector` (the `alerts` channel that
runs it all every `every:` seconds).
"""

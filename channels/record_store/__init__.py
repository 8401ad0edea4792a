"""The `record_store` destination: canonical MCH records upserted into SQL, its schema,
statements, batches, envelopes, the queries the listing commands ask, and its registration."""

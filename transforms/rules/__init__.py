"""Clinical rules evaluated over a person's stored records: suggested risk grading, PMTCT follow-up.

Rules are data (`mappings/rules/*.yaml`); the code here reads a person's `History` as the
record store holds it and returns derived records. Nothing here touches a database: the
record store hands the history in and stores what comes back, in the same transaction.
"""

"""Taking one raw HL7 v2 message in: examine it into a journal entry (charset, MSH, limits,
verdict). Every source that receives HL7 v2 (MLLP, files) uses it; the answer a source
sends back, if any, is its own (channels/mllp/ingest.py)."""

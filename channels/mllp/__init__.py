"""The `mllp` channel: an MLLP listener per channel (source), the sender's client, the
framing both use, the HL7 ACK it answers with, and its registration (connector.py)."""

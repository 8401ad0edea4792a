"""The `mllp_out` destination: the original HL7 message forwarded over MLLP. `charset`
(re-encoding with MSH-18 rewritten), `link` (the bounded pool of connections and their ACKs),
`forwarded` (once per message across records and partitions), `connector` (settings, the sink,
registration under `type: mllp_out`)."""

"""The `file` channel: HL7 files dropped in a directory. `messages` (a file's bytes into
messages), `source` (watching, journaling, moving to done/ or error/), `connector` (its
settings and registration under `type: file`)."""

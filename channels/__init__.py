"""Connectors: each module below registers its channel or destination type when imported
(engine/connectors.py). A new connector is one more module in this list."""

from channels import db_poll, file_connector, http_out, mllp_connector, mllp_out, record_store_connector

__all__ = ["db_poll", "file_connector", "http_out", "mllp_connector", "mllp_out", "record_store_connector"]

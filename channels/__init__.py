"""Connectors: each module below registers its channel or destination type when imported
(core/connectors.py). A new connector is one more module in this list."""

from channels import db_poll, file_connector, http_out, mllp_out
from channels.mllp import connector as mllp_connector
from channels.record_store import connector as record_store_connector

__all__ = ["db_poll", "file_connector", "http_out", "mllp_connector", "mllp_out", "record_store_connector"]

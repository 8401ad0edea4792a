"""Connectors: importing this package registers every channel and destination type below
(core/connectors.py). A new connector is one more module or package in this list."""

from channels import http_out
from channels.db_poll import connector as db_poll
from channels.derived import connector as derived
from channels.file import connector as file
from channels.mllp import connector as mllp
from channels.mllp_out import connector as mllp_out
from channels.record_store import connector as record_store
from channels.wechat import connector as wechat

__all__ = ["db_poll", "derived", "file", "http_out", "mllp", "mllp_out", "record_store", "wechat"]

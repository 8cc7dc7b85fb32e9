"""Asterisk queue_log connector: the pipe-delimited file or an export of its database table
(imported, or followed like `tail -F` with a checkpoint: `queue_log_source`, shapes told apart in
`exports`), and the realtime table in PostgreSQL or MySQL/MariaDB followed by id (`database`); one
pure parser (`queue_log_parser`) for all of them."""

from connectors.queue_log.queue_log_parser import (
    ParsedItem, ParserConfig, QueueLogParser, QueueLogRecord, agent_name, record_of_line, record_of_row)

__all__ = ["ParsedItem", "ParserConfig", "QueueLogParser", "QueueLogRecord", "agent_name", "record_of_line",
           "record_of_row"]

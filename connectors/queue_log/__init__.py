"""Asterisk queue_log connector: the pipe-delimited file (imported, or followed like `tail -F` with a
checkpoint) and database exports of it such as Bicom PBXware's CSV."""

from connectors.queue_log.queue_log_parser import (
    IgnoredRecord, ParsedItem, ParserConfig, QueueLogParser, QueueLogRecord, agent_name, record_of_line,
    record_of_row)

__all__ = ["IgnoredRecord", "ParsedItem", "ParserConfig", "QueueLogParser", "QueueLogRecord", "agent_name",
           "record_of_line", "record_of_row"]

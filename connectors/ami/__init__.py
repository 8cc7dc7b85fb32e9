"""Asterisk Manager Interface connector: a pure parser (`ami_parser`: AMI text to canonical
events) and a TCP transport (`ami_source`: login, keep-alive, reconnect, resume)."""

from connectors.ami.ami_parser import (
    AmiEventMapper,
    AmiFramer,
    AmiMapping,
    AmiMessage,
    AmiParser,
    InvalidFrame,
    ParsedItem,
    parse_queue_lines,
    parse_transcript,
)

__all__ = [
    "AmiEventMapper",
    "AmiFramer",
    "AmiMapping",
    "AmiMessage",
    "AmiParser",
    "InvalidFrame",
    "ParsedItem",
    "parse_queue_lines",
    "parse_transcript",
]

"""Asterisk Manager Interface connector: framing (`ami_framing`: bytes to frames), the choice of
new frames after a reconnection (`ami_overlap`), the mapping (`ami_mapping`: frames to canonical
events), both together for recordings (`ami_parser`), and the TCP transport (`ami_source`: login,
keep-alive, reconnect, resume)."""

from connectors.ami.ami_framing import AmiFramer, AmiMessage, InvalidFrame
from connectors.ami.ami_mapping import AmiEventMapper, AmiMapping, ParsedItem
from connectors.ami.ami_overlap import OverlapFilter
from connectors.ami.ami_parser import AmiParser, parse_transcript

__all__ = ["AmiEventMapper", "AmiFramer", "AmiMapping", "AmiMessage", "AmiParser", "InvalidFrame",
           "OverlapFilter", "ParsedItem", "parse_transcript"]

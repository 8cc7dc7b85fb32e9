"""AMI text to canonical events for recordings and tests: framing (`ami_framing`), the choice of
new frames (`ami_overlap`) and the mapping (`ami_mapping`) together. The TCP transport
(`ami_source`) chains the same three around its socket."""

from __future__ import annotations

from connectors.ami.ami_framing import AmiFramer, AmiMessage, InvalidFrame
from connectors.ami.ami_mapping import DEFAULT_MEMORY, AmiEventMapper, AmiMapping, ParsedItem
from connectors.ami.ami_overlap import NewFrame, OverlapFilter
from connectors.privacy import Pseudonymiser


class AmiParser:
    """Framer, overlap filter and mapper: text in, canonical events out. Responses (to the
    transport's own actions) are dropped here. `new_connection()` marks where a reconnection
    starts, after which frames delivered before may come again."""

    def __init__(self, mapping: AmiMapping, pseudonymiser: Pseudonymiser, memory: int = DEFAULT_MEMORY) -> None:
        self.framer = AmiFramer()
        self.overlap = OverlapFilter()
        self.mapper = AmiEventMapper(mapping, pseudonymiser, memory)

    def feed(self, data: bytes | str, received_ms: int) -> list[ParsedItem]:
        return self.map(self.framer.feed(data), received_ms)

    def new_connection(self) -> list[ParsedItem]:
        """A new connection begins (after `framer.reset()` dropped the lost one's partial frame)."""
        return self._accept(self.overlap.new_connection())

    def tick(self, now_ms: int) -> list[ParsedItem]:
        return self._accept(self.overlap.tick(now_ms)) + self.mapper.tick(now_ms)

    def finish(self, received_ms: int) -> list[ParsedItem]:
        """End of a recording: the last frame, then every exit still undecided."""
        out = self.map(self.framer.flush(), received_ms)
        out += self._accept(self.overlap.new_connection())
        return out + self.mapper.close()

    def map(self, messages: list[AmiMessage | InvalidFrame], received_ms: int) -> list[ParsedItem]:
        out: list[ParsedItem] = []
        for message in messages:
            if isinstance(message, InvalidFrame):
                out.append(message)
            elif message.is_event:
                out.extend(self._accept(self.overlap.admit(message, received_ms)))
        return out

    def _accept(self, frames: list[NewFrame]) -> list[ParsedItem]:
        out: list[ParsedItem] = []
        for frame in frames:
            out.extend(self.mapper.accept(frame.message, frame.received_ms, frame.occurrence))
        return out


def parse_transcript(text: bytes | str, mapping: AmiMapping, pseudonymiser: Pseudonymiser,
                     received_ms: int, chunk_size: int | None = None) -> list[ParsedItem]:
    """A whole recorded AMI transcript, as if it all arrived at `received_ms` on one connection (in
    pieces of `chunk_size` characters or bytes, to mimic socket reads)."""
    parser = AmiParser(mapping, pseudonymiser)
    out: list[ParsedItem] = []
    size = chunk_size or len(text) or 1
    for start in range(0, len(text), size):
        out.extend(parser.feed(text[start:start + size], received_ms))
    out.extend(parser.finish(received_ms))
    return out

"""Which connectors exist and how `callwatch connect` / `callwatch run --source` reach them.

A connector module exposes `SPEC = ConnectorSpec(...)`: a name, its options (prefixed with the
connector's name, e.g. --ami-host, so that they can sit side by side in `callwatch run`), and a
`build(args, settings)` returning a Connector whose `run(sink, stop)` reads the source into the
sink until the source ends or `stop` is set."""

from __future__ import annotations

import argparse
import importlib
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Protocol

if TYPE_CHECKING:
    from connectors.sink import EventSink
    from streams.options import OptionTarget
    from streams.settings import Settings


class Connector(Protocol):
    name: str
    # True for live sources (AMI, webhooks, a followed log): figures are evaluated on the wall
    # clock. False for finite files: the stream's own time drives the board.
    realtime: bool

    def run(self, sink: EventSink, stop: threading.Event) -> None: ...


@dataclass(frozen=True)
class ConnectorSpec:
    name: str
    help: str
    add_arguments: Callable[[OptionTarget], None]
    build: Callable[[argparse.Namespace, Settings], Connector]
    example: str = ""
    # Sources read from a file take it as `callwatch connect NAME PATH` (args.path); `run` has only
    # the prefixed option, since several connectors' options sit side by side there.
    path_help: str = ""


def own_parser(parser: OptionTarget) -> bool:
    """True under `callwatch connect NAME`, where the connector has the parser to itself and may take
    short option names (--mapping, --follow); under `callwatch run` its options share one parser
    with every other connector's and only the prefixed names are given."""
    return isinstance(parser, argparse.ArgumentParser)


CONNECTOR_MODULES = {
    "simulate": "connectors.simulate_source",
    "file": "connectors.file_source",
    "csv": "connectors.call_detail.call_detail_source",
    "ami": "connectors.ami.ami_source",
    "queue-log": "connectors.queue_log.queue_log_source",
    "webhook": "connectors.webhook.webhook_source",
}


def available() -> dict[str, ConnectorSpec]:
    """Every connector, by name."""
    return {name: importlib.import_module(module_name).SPEC for name, module_name in CONNECTOR_MODULES.items()}

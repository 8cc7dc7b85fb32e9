"""Shared by the connector tests: every hypothesis property here reports how many examples it ran
(in the terminal summary, so that a fuzzing run shows its size without -s)."""

from __future__ import annotations

from typing import Any

import pytest

_EXAMPLES: dict[str, int] = {}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        test = getattr(item, "obj", None)
        handle = getattr(test, "hypothesis", None)
        if handle is None or getattr(handle.inner_test, "_counts_examples", False):
            continue
        inner = handle.inner_test
        name = item.nodeid

        def counting(*args: Any, _inner: Any = inner, _name: str = name, **kwargs: Any) -> Any:
            _EXAMPLES[_name] = _EXAMPLES.get(_name, 0) + 1
            return _inner(*args, **kwargs)

        counting._counts_examples = True  # type: ignore[attr-defined]
        handle.inner_test = counting


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _EXAMPLES:
        terminalreporter.section("hypothesis examples per property")
        for name, count in sorted(_EXAMPLES.items()):
            terminalreporter.write_line(f"{count:>7} {name}")

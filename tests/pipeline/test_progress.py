"""The replay progress bar: drawn on a terminal only, never into pipes or logs."""

import io

from streams.io.progress import Progress


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_fraction_on_a_terminal_and_ends_the_line():
    terminal = FakeTerminal()
    progress = Progress(1000, "replay", stream=terminal)
    progress.update(500)
    progress.close()
    text = terminal.getvalue()
    assert "replay [" in text and "50.0%" in text and "100.0%" not in text
    assert text.endswith("\n")


def test_progress_is_silent_when_not_a_terminal():
    pipe = io.StringIO()
    progress = Progress(1000, "replay", stream=pipe)
    progress.update(500)
    progress.close()
    assert pipe.getvalue() == ""


def test_progress_of_a_stream_of_unknown_length_shows_bytes_read():
    terminal = FakeTerminal()
    progress = Progress(None, "replay", stream=terminal)
    progress.update(2_500_000)
    progress.close()
    assert "2.5 MB read" in terminal.getvalue()

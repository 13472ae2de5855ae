"""How following a run looks: a live bar on a terminal, one plain line per change in a pipe.

Both print every transition as a line of its own (so a terminal keeps the history too); the
terminal's renderer also redraws one bar line in place (carriage return, erase line) every tick.
"""

from __future__ import annotations

import shutil
from typing import Protocol, TextIO

from supercheck.cli.view import View, bar, line

ERASE_LINE = "\r\x1b[2K"


class Renderer(Protocol):
    def update(self, v: View, elapsed: float) -> None:
        """The run changed (or is seen for the first time)."""

    def tick(self, elapsed: float) -> None:
        """Time passed with no change."""

    def note(self, text: str) -> None:
        """A line of the CLI's own (a resubmission, a warning)."""

    def close(self) -> None:
        """Before the verdict: leave the terminal on a fresh line."""


class PlainRenderer:
    """A pipe or a CI log: a line per change, nothing redrawn, no escape codes."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.last: tuple[object, ...] | None = None

    def update(self, v: View, elapsed: float) -> None:
        if v.key() != self.last:
            self.last = v.key()
            self.out.write(line(v, elapsed) + "\n")
            self.out.flush()

    def tick(self, elapsed: float) -> None:
        pass

    def note(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def close(self) -> None:
        pass


class TerminalRenderer:
    """A terminal: each change as a line, and below it a bar redrawn in place."""

    def __init__(self, out: TextIO, width: int | None = None) -> None:
        self.out = out
        self.width = width
        self.view: View | None = None
        self.last: tuple[object, ...] | None = None
        self.drawn = False

    def _width(self) -> int:
        return self.width or shutil.get_terminal_size((100, 24)).columns

    def _clear(self) -> None:
        if self.drawn:
            self.out.write(ERASE_LINE)
            self.drawn = False

    def _draw(self, elapsed: float) -> None:
        if self.view is not None and not self.view.terminal:
            self.out.write(ERASE_LINE + bar(self.view, elapsed, self._width()))
            self.drawn = True
        self.out.flush()

    def update(self, v: View, elapsed: float) -> None:
        self.view = v
        if v.key() != self.last:
            self.last = v.key()
            self._clear()
            self.out.write(line(v, elapsed) + "\n")
        self._draw(elapsed)

    def tick(self, elapsed: float) -> None:
        self._draw(elapsed)

    def note(self, text: str) -> None:
        self._clear()
        self.out.write(text + "\n")
        self.out.flush()  # the bar comes back at the next tick

    def close(self) -> None:
        self._clear()
        self.out.flush()


def renderer_for(out: TextIO) -> Renderer:
    """The bar only where a person watches: stdout is a terminal."""
    isatty = getattr(out, "isatty", None)
    if isatty is not None and isatty():
        return TerminalRenderer(out)
    return PlainRenderer(out)

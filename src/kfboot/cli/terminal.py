"""All of kfboot's terminal rendering: the :class:`Terminal` with semantic methods (success, failure,
fix, problem, …) and the three renderings of core's :class:`~kfboot.reporting.Reporter` — Rich with live
progress on a terminal, plain timestamped lines otherwise, JSON lines (on stderr, so stdout stays one
JSON document) with ``-o json``.

Text is never markup here: what a command prints often comes from the cluster (an error ``GET
[/healthz] 500``, a pod's log) and is shown exactly as it is. Styles are given apart from the text
(``("✓", "green")``), and every Console is made with markup off, so a stray ``[...]`` can neither
raise nor vanish. A progress block always ends, with ✗ / a ``failed`` event when its body raised.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import IO

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from kfboot.reporting import NullTask, Task

#: a piece of a line: plain text, or (text, Rich style)
Part = str | tuple[str, str]


def console(*, stderr: bool) -> Console:
    """A Console that never interprets markup, emoji codes or highlights: text is shown as given."""
    return Console(stderr=stderr, markup=False, emoji=False, highlight=False, soft_wrap=True)


def text_of(*parts: Part) -> Text:
    return Text.assemble(*parts)


class Terminal:
    """One output stream (stdout for results, stderr for progress and errors), by meaning."""

    def __init__(self, con: Console) -> None:
        self.console = con

    @property
    def is_terminal(self) -> bool:
        return self.console.is_terminal

    def line(self, *parts: Part, end: str = "\n") -> None:
        self.console.print(text_of(*parts), end=end)

    def blank(self) -> None:
        self.console.print()

    def success(self, text: str, *more: Part) -> None:
        self.line(("✓", "green"), " ", text, *more)

    def failure(self, text: str, *more: Part) -> None:
        self.line(("✗", "red"), " ", text, *more)

    def notice(self, text: str) -> None:
        self.line(("!", "yellow"), " ", text)

    def fix(self, text: str, indent: int = 6) -> None:
        self.line(" " * indent, ("fix:", "dim"), " ", text)

    def problem(self, label: str, text: str, indent: int = 2) -> None:
        self.line(" " * indent, (label, "red"), " ", text)

    def error(self, reason: str, remedy: str | None = None, causes: Iterable[str] = ()) -> None:
        self.line(("error:", "bold red"), " ", reason)
        if remedy:
            self.fix(remedy, indent=2)
        for cause in causes:
            self.line("  ", ("caused by:", "dim"), " ", cause)

    def warn(self, text: str) -> None:
        self.line(("warning:", "bold yellow"), " ", text)

    def debug(self, text: str) -> None:
        self.line(("debug:", "dim"), " ", (text, "dim"))

    def table(self, headers: Iterable[str], rows: Iterable[Iterable[Part]]) -> None:
        """A borderless table; every cell is plain text (or (text, style))."""
        table = Table(*headers, box=None, pad_edge=False)
        for row in rows:
            table.add_row(*(text_of(cell) for cell in row))
        self.console.print(table)


def stamp() -> str:
    return time.strftime("%H:%M:%S")


# ------------------------------------------------------------------------------------------ plain


class _PlainTask(NullTask):
    def __init__(self, reporter: PlainReporter, description: str, total: float | None) -> None:
        super().__init__(description)
        self._r, self.total, self.completed = reporter, total, 0.0
        self._last_line = 0.0

    def update(
        self, description: str | None = None, *, completed: float | None = None, detail: str | None = None
    ) -> None:
        super().update(description)
        if completed is not None:
            self.completed = completed
        # plain output (logs, CI): at most one line every 5 s; the final state is printed on exit
        if time.monotonic() - self._last_line > 5:
            self.emit()

    def advance(self, amount: float = 1) -> None:
        self.update(completed=self.completed + amount)

    def emit(self) -> None:
        self._last_line = time.monotonic()
        suffix = f" ({self.completed:.0f}/{self.total:.0f})" if self.total else ""
        self._r.line(f"… {self.description}{suffix}")


class PlainReporter:
    """One plain line per event, for logs and pipes."""

    def __init__(self, stream: IO[str] | None = None, *, verbose: bool = False) -> None:
        self._stream = stream
        self.verbose = verbose

    def line(self, text: str) -> None:
        stream = self._stream or sys.stderr
        stream.write(f"{stamp()} {text}\n")
        stream.flush()

    def info(self, message: str, *, phase: str | None = None) -> None:
        self.line(message)

    def warn(self, message: str) -> None:
        self.line(f"WARNING: {message}")

    def debug(self, message: str) -> None:
        if self.verbose:
            self.line(f"debug: {message}")

    @contextmanager
    def progress(self, description: str, total: float | None = None, *, phase: str | None = None) -> Iterator[Task]:
        task = _PlainTask(self, description, total)
        task.emit()
        start = time.monotonic()
        try:
            yield task
        except BaseException:
            task.failed = True
            raise
        finally:
            self.line(f"{'✗' if task.failed else '✓'} {task.description} ({time.monotonic() - start:.1f} s)")


# ------------------------------------------------------------------------------------------- rich


class _RichTask(NullTask):
    def __init__(self, progress: Progress, task_id: int, description: str) -> None:
        super().__init__(description)
        self._p, self._id, self._detail = progress, task_id, ""

    def fail(self, description: str) -> None:
        self.failed = True
        self.update(description, detail="")

    def update(
        self, description: str | None = None, *, completed: float | None = None, detail: str | None = None
    ) -> None:
        super().update(description)
        if detail is not None:
            self._detail = detail
        text = self.description + (f"\n{self._detail}" if self._detail else "")
        self._p.update(self._id, description=text, completed=completed)  # type: ignore[arg-type]

    def advance(self, amount: float = 1) -> None:
        self._p.advance(self._id, amount)  # type: ignore[arg-type]


class RichReporter:
    """Live progress on a terminal (stderr), through the one shared console."""

    def __init__(self, term: Terminal, *, verbose: bool = False) -> None:
        self.term = term
        self.verbose = verbose

    def info(self, message: str, *, phase: str | None = None) -> None:
        self.term.line(message)

    def warn(self, message: str) -> None:
        self.term.line(("WARNING:", "yellow"), " ", message)

    def debug(self, message: str) -> None:
        if self.verbose:
            self.term.debug(message)

    @contextmanager
    def progress(self, description: str, total: float | None = None, *, phase: str | None = None) -> Iterator[Task]:
        columns = [SpinnerColumn(), TextColumn("{task.description}", markup=False)]
        if total:
            columns.append(BarColumn())
        columns.append(TimeElapsedColumn())
        start = time.monotonic()
        task: _RichTask | None = None
        try:
            with Progress(*columns, console=self.term.console, transient=True) as progress:
                task_id = progress.add_task(description, total=total)
                task = _RichTask(progress, task_id, description)
                yield task
        except BaseException:
            if task is not None:
                task.failed = True
            raise
        finally:
            failed = task is None or task.failed
            final = task.description if task is not None else description
            mark = ("✗", "red") if failed else ("✓", "green")
            self.term.line(mark, " ", final, (f" ({time.monotonic() - start:.1f} s)", "dim"))


# ------------------------------------------------------------------------------------------- json


class JsonReporter:
    """Events as JSON lines on stderr; the command's result is the one JSON document on stdout."""

    def __init__(self, stream: IO[str] | None = None, *, verbose: bool = False) -> None:
        self._stream = stream
        self.verbose = verbose

    def event(self, kind: str, **fields: object) -> None:
        stream = self._stream or sys.stderr
        stream.write(json.dumps({"event": kind, "time": round(time.time(), 3), **fields}) + "\n")
        stream.flush()

    def info(self, message: str, *, phase: str | None = None) -> None:
        self.event("info", message=message, **({"phase": phase} if phase else {}))

    def warn(self, message: str) -> None:
        self.event("warning", message=message)

    def debug(self, message: str) -> None:
        if self.verbose:
            self.event("debug", message=message)

    @contextmanager
    def progress(self, description: str, total: float | None = None, *, phase: str | None = None) -> Iterator[Task]:
        tag = {"phase": phase} if phase else {}
        self.event("start", description=description, **tag)
        start = time.monotonic()
        task = NullTask(description)
        try:
            yield task
        except BaseException:
            task.failed = True
            raise
        finally:
            self.event(
                "failed" if task.failed else "done",
                description=description,
                **tag,
                seconds=round(time.monotonic() - start, 2),
            )

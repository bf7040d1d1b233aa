"""How core code reports what it does: the Reporter protocol and its three renderings.

Core code never prints. It calls a :class:`Reporter` (``info``, ``warn``, ``progress``); the CLI picks
the rendering: Rich with live progress on a terminal, plain timestamped lines otherwise, JSON lines
(on stderr, so stdout stays one JSON document) with ``-o json``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import IO, Protocol

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn


class Task(Protocol):
    """A unit of long work in progress."""

    def update(
        self, description: str | None = None, *, completed: float | None = None, detail: str | None = None
    ) -> None:
        """``detail``: extra lines shown live on a terminal only (a per-item view); plain output keeps to
        the one-line description."""
        ...

    def advance(self, amount: float = 1) -> None: ...

    def fail(self, description: str) -> None:
        """End state: this work did not succeed (rendered with ✗ instead of ✓)."""
        ...


class Reporter(Protocol):
    def info(self, message: str) -> None: ...

    def warn(self, message: str) -> None: ...

    def progress(self, description: str, total: float | None = None) -> AbstractContextManager[Task]: ...


class _NullTask:
    failed = False

    def update(
        self, description: str | None = None, *, completed: float | None = None, detail: str | None = None
    ) -> None:
        pass

    def advance(self, amount: float = 1) -> None:
        pass

    def fail(self, description: str) -> None:
        self.failed = True


class NullReporter:
    """Reports nothing (library use, tests)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, str]] = []

    def info(self, message: str) -> None:
        self.messages.append(("info", message))

    def warn(self, message: str) -> None:
        self.messages.append(("warn", message))

    @contextmanager
    def progress(self, description: str, total: float | None = None) -> Iterator[Task]:
        self.messages.append(("progress", description))
        yield _NullTask()


class _PlainTask:
    def __init__(self, reporter: PlainReporter, description: str, total: float | None) -> None:
        self._r, self.description, self.total, self.completed = reporter, description, total, 0.0
        self._last_line = 0.0
        self.failed = False

    def fail(self, description: str) -> None:
        self.description, self.failed = description, True

    def update(
        self, description: str | None = None, *, completed: float | None = None, detail: str | None = None
    ) -> None:
        if description is not None:
            self.description = description
        if completed is not None:
            self.completed = completed
        # plain output (logs, CI): at most one line every 5 s; the final state is printed on exit
        if time.monotonic() - self._last_line > 5:
            self._emit()

    def advance(self, amount: float = 1) -> None:
        self.update(completed=self.completed + amount)

    def _emit(self) -> None:
        self._last_line = time.monotonic()
        suffix = f" ({self.completed:.0f}/{self.total:.0f})" if self.total else ""
        self._r.line(f"… {self.description}{suffix}")


class PlainReporter:
    """One plain line per event, for logs and pipes."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream

    def line(self, text: str) -> None:
        stream = self._stream or sys.stderr
        stream.write(f"{time.strftime('%H:%M:%S')} {text}\n")
        stream.flush()

    def info(self, message: str) -> None:
        self.line(message)

    def warn(self, message: str) -> None:
        self.line(f"WARNING: {message}")

    @contextmanager
    def progress(self, description: str, total: float | None = None) -> Iterator[Task]:
        task = _PlainTask(self, description, total)
        task._emit()
        start = time.monotonic()
        yield task
        self.line(f"{'✗' if task.failed else '✓'} {task.description} ({time.monotonic() - start:.1f} s)")


class _RichTask:
    def __init__(self, progress: Progress, task_id: int, description: str) -> None:
        self._p, self._id = progress, task_id
        self._description, self._detail = description, ""
        self.failed = False

    def fail(self, description: str) -> None:
        self.failed = True
        self.update(description, detail="")

    def update(
        self, description: str | None = None, *, completed: float | None = None, detail: str | None = None
    ) -> None:
        if description is not None:
            self._description = description
        if detail is not None:
            self._detail = detail
        text = self._description + (f"\n{self._detail}" if self._detail else "")
        self._p.update(self._id, description=text, completed=completed)  # type: ignore[arg-type]

    def advance(self, amount: float = 1) -> None:
        self._p.advance(self._id, amount)  # type: ignore[arg-type]


class RichReporter:
    """Live progress on a terminal (stderr), through the one shared console."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def info(self, message: str) -> None:
        self.console.print(message, highlight=False)

    def warn(self, message: str) -> None:
        self.console.print(f"[yellow]WARNING:[/] {message}", highlight=False)

    @contextmanager
    def progress(self, description: str, total: float | None = None) -> Iterator[Task]:
        columns = [SpinnerColumn(), TextColumn("{task.description}")]
        if total:
            columns.append(BarColumn())
        columns.append(TimeElapsedColumn())
        with Progress(*columns, console=self.console, transient=True) as progress:
            task_id = progress.add_task(description, total=total)
            task = _RichTask(progress, task_id, description)
            start = time.monotonic()
            yield task
            final = task._description
        mark = "[red]✗[/]" if task.failed else "[green]✓[/]"
        self.console.print(f"{mark} {final} [dim]({time.monotonic() - start:.1f} s)[/]", highlight=False)


class JsonReporter:
    """Events as JSON lines on stderr; the command's result is the one JSON document on stdout."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream

    def event(self, kind: str, **fields: object) -> None:
        stream = self._stream or sys.stderr
        stream.write(json.dumps({"event": kind, "time": round(time.time(), 3), **fields}) + "\n")
        stream.flush()

    def info(self, message: str) -> None:
        self.event("info", message=message)

    def warn(self, message: str) -> None:
        self.event("warning", message=message)

    @contextmanager
    def progress(self, description: str, total: float | None = None) -> Iterator[Task]:
        self.event("start", description=description)
        start = time.monotonic()
        task = _NullTask()
        yield task
        self.event(
            "failed" if task.failed else "done", description=description, seconds=round(time.monotonic() - start, 2)
        )

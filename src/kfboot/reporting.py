"""How core code reports what it does: the :class:`Reporter` protocol.

Core code never prints. It calls a Reporter (``info``, ``warn``, ``debug``, ``progress``); the CLI picks
the rendering (``kfboot.cli.terminal``: live progress on a terminal, plain timestamped lines, or JSON
lines). Messages are plain text — often with text from the cluster in them — never markup: a renderer
must show them as they are.

``phase`` (on ``info`` and ``progress``): a stable name for where the work is (``step:kubeflow``, ``apply``,
``rook-operator``), for machines reading the JSON events; the words of a message may change, a phase does not.

A progress block always ends: when its body raises, the renderer reports it as failed (✗ / a ``failed``
event) and the exception goes on.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol


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
    def info(self, message: str, *, phase: str | None = None) -> None: ...

    def warn(self, message: str) -> None: ...

    def debug(self, message: str) -> None:
        """Detail for ``-v``: shown only when the user asked for it."""
        ...

    def progress(
        self, description: str, total: float | None = None, *, phase: str | None = None
    ) -> AbstractContextManager[Task]: ...


class NullTask:
    """A task that records only whether it failed (and its last description)."""

    def __init__(self, description: str = "") -> None:
        self.description = description
        self.failed = False

    def update(
        self, description: str | None = None, *, completed: float | None = None, detail: str | None = None
    ) -> None:
        if description is not None:
            self.description = description

    def advance(self, amount: float = 1) -> None:
        pass

    def fail(self, description: str) -> None:
        self.description, self.failed = description, True


class NullReporter:
    """Reports nothing (library use, tests): keeps the messages in :attr:`messages`."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, str]] = []

    def info(self, message: str, *, phase: str | None = None) -> None:
        self.messages.append(("info", message))

    def warn(self, message: str) -> None:
        self.messages.append(("warn", message))

    def debug(self, message: str) -> None:
        self.messages.append(("debug", message))

    @contextmanager
    def progress(self, description: str, total: float | None = None, *, phase: str | None = None) -> Iterator[NullTask]:
        self.messages.append(("progress", description))
        task = NullTask(description)
        try:
            yield task
        except BaseException:
            task.failed = True
            self.messages.append(("failed", task.description))
            raise
        self.messages.append(("failed" if task.failed else "done", task.description))

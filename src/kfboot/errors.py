"""Typed errors. Core code raises these; only the CLI turns them into output and exit codes."""

from __future__ import annotations

from enum import IntEnum

from pydantic import Field

from kfboot.documents import Document, absent


class ExitCode(IntEnum):
    OK = 0
    CHECK_FAILED = 1
    BAD_INPUT = 2
    RUNTIME = 3


class KfbootError(Exception):
    """An error with a one-line reason and a remedy the user can act on."""

    exit_code: ExitCode = ExitCode.RUNTIME

    def __init__(self, reason: str, remedy: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.remedy = remedy

    def doc(self, causes: list[str] | None = None) -> ErrorDoc:
        return ErrorDoc(
            error=type(self).__name__, reason=self.reason, remedy=self.remedy, exit_code=self.exit_code, causes=causes
        )


class ErrorDoc(Document):
    """What every command prints with ``-o json`` when it fails (and ``kfboot up``'s ``error``)."""

    error: str = Field(description="the error's class: BadInputError, CheckFailedError, RuntimeFailure")
    reason: str
    remedy: str | None
    exit_code: ExitCode = Field(alias="exitCode")
    causes: list[str] | None = Field(
        default=None, exclude_if=absent, description="with -v: the exceptions behind the error, outermost first"
    )


class BadInputError(KfbootError):
    """The user's input (flag, config, file) is wrong; nothing was changed."""

    exit_code = ExitCode.BAD_INPUT


class CheckFailedError(KfbootError):
    """A check ran and failed."""

    exit_code = ExitCode.CHECK_FAILED


class RuntimeFailure(KfbootError):
    """The cluster or a local component failed at run time."""

    exit_code = ExitCode.RUNTIME

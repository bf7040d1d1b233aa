"""Former home of the Reporter protocol, kept only so that ``steps/storage.py`` and ``sandbox/cluster.py``
(being split into packages on another branch) still import: new code imports :mod:`kfboot.reporting`.
Remove this module once those two import ``kfboot.reporting``. No rendering here (see ``kfboot.cli.terminal``)."""

from __future__ import annotations

from kfboot.reporting import NullReporter, NullTask, Reporter, Task

__all__ = ["NullReporter", "NullTask", "Reporter", "Task"]

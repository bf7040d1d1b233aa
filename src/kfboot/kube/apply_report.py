"""What an apply is asked (:class:`ApplyOptions`) and what it reports (:class:`ApplyReport`, one
:class:`ObjectResult` per object). Used by :mod:`kfboot.kube.apply`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field

from kfboot.documents import Document


@dataclass
class ApplyOptions:
    field_manager: str = "kfboot"
    concurrency: int = 16
    timeout: float = 900.0
    labels: dict[str, str] = field(default_factory=dict)
    #: how long an object of a kind nobody serves keeps waiting for a CRD from elsewhere
    unknown_kind_grace: float = 30.0
    #: the fingerprints a previous apply reported (:attr:`ApplyReport.fingerprints`): an object whose live
    #: copy still matches its fingerprint is not sent again
    previous: dict[str, str] = field(default_factory=dict)


@dataclass
class ObjectResult:
    object: str
    outcome: Literal["applied", "failed", "held"]
    reason: str = ""
    hint: str = ""
    attempts: int = 0
    #: applied before with this very content, and nobody changed what kfboot set since: not sent again
    unchanged: bool = False


@dataclass
class ApplyReport:
    total: int
    seconds: float
    requests: int
    results: list[ObjectResult]
    #: object → "hash of what was sent:hash of what kfboot's field manager owns afterwards" (see
    #: :func:`~kfboot.kube.apply_body.owned_fields`)
    fingerprints: dict[str, str] = field(default_factory=dict, repr=False)
    #: when each gate opened, in seconds from the start: "CRD Kind.group Established", "kind Kind.group
    #: served" (a kind from outside the bundle), "endpoints ns/name ready" (a webhook/APIService backend)
    gates: dict[str, float] = field(default_factory=dict)

    @property
    def applied(self) -> list[ObjectResult]:
        return [r for r in self.results if r.outcome == "applied"]

    @property
    def problems(self) -> list[ObjectResult]:
        return [r for r in self.results if r.outcome != "applied"]

    @property
    def ok(self) -> bool:
        return not self.problems

    def doc(self) -> ApplyDoc:
        return ApplyDoc(
            total=self.total,
            applied=len(self.applied),
            seconds=self.seconds,
            requests=self.requests,
            attempts=sum(r.attempts for r in self.results),
            unchanged=sum(r.unchanged for r in self.results),
            problems=self.problems,
            gates=self.gates,
        )


class ApplyDoc(Document):
    """An apply in numbers, each object that was not applied, and when each gate opened."""

    total: int
    applied: int
    seconds: float
    requests: int = Field(description="API requests sent")
    attempts: int
    unchanged: int = Field(description="objects not sent again: applied before with this very content")
    problems: list[ObjectResult]
    gates: dict[str, float]

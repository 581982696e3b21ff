"""A vLLM worker the test module opened already, as a work's inference: one engine serves a whole module, and
`runner.apply` runs the stage's own work through it."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import ClassVar

from stylemap.runner import Work
from stylemap.teacher.client import served


@dataclass(frozen=True)
class Served:
    infer: object
    rows_per_call: ClassVar[int | None] = None  # a whole frame as one list, as the local transport sends a shard

    @contextmanager
    def local(self):
        yield self.infer


def through(work: Work, worker) -> Work:
    """`work` with its inference served by the open `worker` (sampling from the work's own spec)."""
    return replace(work, inference=Served(served(worker, work.inference.sampling)))

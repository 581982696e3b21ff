"""One reject accountant for every stage that drops rows (the datatrove filter shape).

A filter answers `(reason, detail)` or None; `Rejects.reject` counts the reason and keeps the row's key
and detail for an exclusion file. `report(in_=...)` refuses to produce metrics unless
`in = kept + rejected`, so no stage can lose a row without saying why.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pandas as pd


class ReconcileError(AssertionError):
    """A stage's counts do not add up: some row was neither kept nor rejected."""


@dataclass
class Rejects:
    key: str = "image_id"  # the column naming a rejected row in `frame()`
    kept: int = 0
    counts: Counter = field(default_factory=Counter)
    rows: list = field(default_factory=list)

    def reject(self, key, reason: str, detail: str = "", **extra) -> None:
        self.counts[reason] += 1
        self.rows.append({self.key: str(key), "reason": reason, "detail": detail, **extra})

    @classmethod
    def from_column(cls, outcome: pd.Series, ok) -> Rejects:
        """Counts of a per-row outcome column (describe's status, embed's error): `ok` (a value, or a tuple of
        them) is kept, any other value is that row's reject reason."""
        kept = outcome.isin(ok if isinstance(ok, tuple) else (ok,))
        tally = cls(kept=int(kept.sum()))
        for reason, n in outcome[~kept].value_counts().sort_index().items():
            tally.count(str(reason), n)
        return tally

    def count(self, reason: str, n: int) -> None:
        """Rejects known only as a number (e.g. rows another stage already recorded one by one)."""
        self.counts[reason] += int(n)

    @property
    def rejected(self) -> int:
        return sum(self.counts.values())

    def merge(self, other: Rejects) -> None:
        self.kept += other.kept
        self.counts.update(other.counts)
        self.rows += other.rows

    def to_dict(self) -> dict:
        """JSON-able state, so a resumable stage can store a finished part's tally beside its shards."""
        return {"key": self.key, "kept": self.kept, "counts": dict(self.counts), "rows": self.rows}

    @classmethod
    def from_dict(cls, d: dict) -> Rejects:
        return cls(d["key"], d["kept"], Counter(d["counts"]), d["rows"])

    def frame(self, **constant) -> pd.DataFrame:
        columns = [*constant, self.key, "reason", "detail"]
        return pd.DataFrame([{**constant, **r} for r in self.rows], columns=columns)

    def report(self, in_: int, name: str = "") -> dict:
        """Flat counts {in, kept, rejected, rejected.<reason>}; raises when they do not reconcile."""
        if in_ != self.kept + self.rejected:
            raise ReconcileError(f"{name or 'stage'}: in={in_} but kept={self.kept} + rejected={self.rejected} "
                                 f"({dict(self.counts)})")
        prefix = f"{name}." if name else ""
        out = {f"{prefix}in": in_, f"{prefix}kept": self.kept, f"{prefix}rejected": self.rejected}
        out.update({f"{prefix}rejected.{reason}": n for reason, n in sorted(self.counts.items())})
        return out

import pandas as pd
import pytest

from stylemap.rejects import ReconcileError, Rejects


def test_counts_rows_and_a_reconciled_report():
    tally = Rejects(kept=3)
    tally.reject("a", "too_short", "2 words < 5")
    tally.reject("b", "too_short")
    tally.count("over_cap", 4)
    assert tally.report(9, "demo") == {"demo.in": 9, "demo.kept": 3, "demo.rejected": 6,
                                       "demo.rejected.over_cap": 4, "demo.rejected.too_short": 2}
    frame = tally.frame(source="demo")
    assert frame.columns.tolist() == ["source", "image_id", "reason", "detail"] and len(frame) == 2


def test_a_lost_row_is_an_error():
    tally = Rejects(kept=3)
    tally.count("bad", 1)
    with pytest.raises(ReconcileError, match=r"in=5 but kept=3 \+ rejected=1"):
        tally.report(5)


def test_state_survives_a_round_trip_and_merges():
    a = Rejects(kept=2)
    a.reject("x", "language", "fr")
    b = Rejects.from_dict(a.to_dict())
    b.merge(a)
    assert b.report(6) == {"in": 6, "kept": 4, "rejected": 2, "rejected.language": 2}


def test_several_outcomes_can_count_as_kept():
    """describe keeps complete analyses and those cut after their style section (schemas.LABELLABLE)."""
    outcome = pd.Series(["ok", "truncated_styled", "truncated", "failed", "ok"])
    assert Rejects.from_column(outcome, ("ok", "truncated_styled")).report(5, "t") == {
        "t.in": 5, "t.kept": 3, "t.rejected": 2, "t.rejected.failed": 1, "t.rejected.truncated": 1}

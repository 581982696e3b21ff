"""Atomic file writes: a reader, DVC or a resumed run never sees a half-written output."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

METRIC_DECIMALS = 6  # metrics are rounded so that float noise across CPU kinds does not show in `dvc metrics diff`


def write_atomic(df: pd.DataFrame | pa.Table, path: str | Path) -> Path:
    """Write parquet through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = df if isinstance(df, pa.Table) else pa.Table.from_pandas(df, preserve_index=False)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path


def write_text_atomic(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def rounded(value):
    """Floats (also nested, also numpy scalars) to METRIC_DECIMALS: the 16th digit is noise in review."""
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v) for v in value]
    if isinstance(value, float) and math.isfinite(value):
        return round(value, METRIC_DECIMALS)
    if hasattr(value, "item"):  # numpy scalars
        return rounded(value.item())
    return value


def write_json(path: str | Path, data: dict) -> None:
    """Flat, sorted, rounded JSON so `dvc metrics diff` prints one stable line per number."""
    write_text_atomic(path, json.dumps(rounded(data), indent=2, sort_keys=True) + "\n")

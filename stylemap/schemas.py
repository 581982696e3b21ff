"""The contracts between stages: one pyarrow schema per parquet output, checked on every write, and the
columns of each CSV plot that a later stage (report) reads.

`write(name, frame, path)` converts a DataFrame (or Table) to exactly the schema `SCHEMAS[name]` and writes
it atomically; a missing or extra column, a value of the wrong type or a null in a required column is a
`SchemaError` naming the output and the column, before anything reaches disk. `write_csv(name, frames, path)`
writes a plot with exactly the columns `CSV_COLUMNS[name]`.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa

from stylemap.files import write_atomic

string_list = pa.list_(pa.string())


def _key(name: str, type_: pa.DataType = pa.string()) -> pa.Field:
    return pa.field(name, type_, nullable=False)


SCHEMAS: dict[str, pa.Schema] = {
    "sample": pa.schema([
        _key("image_id"), _key("source"), _key("image_name"), _key("part_id", pa.int64()),
        _key("prompt"), ("seed", pa.int64()), ("cfg", pa.float64()), ("steps", pa.int64()), ("sampler", pa.string()),
        _key("width", pa.int64()), _key("height", pa.int64()), _key("phash"),
        _key("image_bytes", pa.binary()),  # the original file, or a lossless WebP (smaller, or shrunk to sample.image_side)
        ("timestamp", pa.timestamp("us", tz="UTC")),  # when the image was made, where the corpus says
        ("annotated_styles", string_list),  # the corpus's own style annotations (JourneyDB's Task1.Style)
        _key("image_nsfw", pa.float64()),  # the corpus's NSFW score, else open_nsfw's (sample.nsfw_screen_max)
        _key("image_nsfw_by"),  # corpus | open_nsfw
        ("generator", pa.string()),  # the model that made the image, where the corpus says (records.generator)
    ]),
    "sample_rejects": pa.schema([_key("source"), _key("image_name"), _key("reason"), ("detail", pa.string())]),
    "describe": pa.schema([
        # ok | truncated_styled | truncated | failed | cannot_analyse | empty (teacher/describe.py's `status`)
        _key("image_id"), ("description", pa.string()), _key("status"),
        ("error", pa.string()), _key("backend"), _key("model"), ("prompt_hash", pa.string()),
        ("sampling", pa.string()), ("vllm_version", pa.string()),
    ]),
    "llm_inputs": pa.schema([_key("image_id"), ("description", pa.string()), _key("status")]),  # label's LLM subset
    "llm_labels": pa.schema([
        _key("image_id"), ("llm_raw", string_list), ("llm_styles", string_list), ("llm_unmapped", string_list),
        _key("llm_status"), ("llm_error", pa.string()), ("llm_model", pa.string()), ("llm_prompt_hash", pa.string()),
        ("llm_sampling", pa.string()), ("vllm_version", pa.string()),
    ]),
    "labels": pa.schema([
        _key("image_id"), _key("keywords_styles", string_list),
        # LLM columns are null for images outside label.llm_subset (or all, when run_llm is false)
        ("llm_raw", string_list), ("llm_styles", string_list), ("llm_unmapped", string_list), ("llm_status", pa.string()),
        ("llm_error", pa.string()), ("llm_model", pa.string()), ("llm_prompt_hash", pa.string()),
        ("llm_sampling", pa.string()), ("vllm_version", pa.string()),
        ("annotation_styles", string_list),  # the corpus's own style annotations through the taxonomy (null: none)
        _key("styles", string_list), _key("taxonomy_version", pa.int64()),
    ]),
    "asked": pa.schema([  # what each prompt asks for (keywords on the prompt alone) and the probe's top-1
        _key("image_id"), _key("asked_styles", string_list), _key("asked_by"), _key("taxonomy_version", pa.int64()),
        _key("shown"),
    ]),
    "recipes": pa.schema([
        _key("image_id"), _key("label"), _key("styles", string_list),
        _key("aug_seed", pa.int64()),  # -1 = the original image; >= 0 = an augmentation recipe applied at embed time
    ]),
    "embed": pa.schema([
        _key("image_id"), _key("aug_seed", pa.int64()),
        ("embedding", pa.list_(pa.float32())),  # L2-normalised; null when the image was rejected
        _key("error"),  # "" for kept rows, else the reject reason
    ]),
    "split": pa.schema([_key("image_id"), _key("aug_seed", pa.int64()), _key("label"), _key("split")]),
    "val_predictions": pa.schema([
        _key("image_id"), _key("label"), _key("styles", string_list), _key("predicted"), _key("correct", pa.bool_()),
        _key("topk", string_list), _key("topk_prob", pa.list_(pa.float32())),
        _key("probs", pa.list_(pa.float32())),  # calibrated distribution, classes.json order: quantify's fit data
        _key("entropy", pa.float64()), _key("cross_entropy_uniform", pa.float64()),
    ]),
    "predictions": pa.schema([
        _key("image_id"), _key("top1"), _key("top3", string_list), _key("top3_prob", pa.list_(pa.float32())),
        _key("probs", pa.list_(pa.float32())),  # full distribution, in classes.json order
        _key("confidence", pa.float64()),
        _key("entropy", pa.float64()),  # nats
        _key("ambiguity", pa.float64()),  # entropy / log(n_classes), in [0, 1]
        _key("cross_entropy_uniform", pa.float64()),  # H(uniform, p), nats: the style-ambiguity paper's score
    ]),
    "predict_rejects": pa.schema([_key("platform"), _key("image_id"), _key("aug_seed", pa.int64()), _key("reason")]),
    "label_issues": pa.schema([  # audited training images, most suspect label first
        _key("image_id"), _key("label"), _key("suggested"),  # given label; the out-of-fold probe's top class
        _key("suggested_prob", pa.float64()),
        _key("quality", pa.float64()),  # cleanlab label-quality score (self-confidence: p(given label)), in [0, 1]
        _key("issue", pa.bool_()),  # flagged by cleanlab.filter.find_label_issues
    ]),
    "map": pa.schema([_key("image_id"), _key("x", pa.float32()), _key("y", pa.float32()), _key("top1")]),
}


# describe statuses label reads: complete analyses, and analyses cut at max_tokens once their style section began
# (the sections after it, composition, palette and technical aspects, name no style the labellers look for)
LABELLABLE = ("ok", "truncated_styled")

CSV_COLUMNS: dict[str, list[str]] = {  # quantify's plots, read by report
    "prevalence": ["platform", "method", "default", "style", "share", "lo", "hi", "confidence"],
    "prevalence_differences": ["platform_a", "platform_b", "style", "difference", "lo", "hi", "significant",
                               "confidence"],
    "trends": ["platform", "month", "style", "share", "images"],
    "gold_prevalence": ["method", "style", "estimated", "true", "images"],
    "gold_scores": ["encoder", "metric", "value", "lo", "hi", "images"],  # evaluate's, read by report
    "generator_prevalence": ["platform", "generator", "method", "style", "share", "lo", "hi", "images", "confidence"],
    "generator_differences": ["platform", "generator_a", "generator_b", "style", "difference", "lo", "hi",
                              "significant", "confidence"],
    "asked_shown": ["platform", "asked", "shown", "images"],  # asked's, read by report
    "follow_rates": ["platform", "style", "prompts", "rated", "raw", "raw_lo", "raw_hi", "adjusted", "adjusted_lo",
                     "adjusted_hi", "substitute", "substitute_share", "substitute_lo", "substitute_hi", "confidence"],
    "shift": ["platform", "mmd2", "threshold", "baseline_mmd2", "null_mmd2", "shifted", "rows_in", "rows_augmented",
              "rows_training_image", "rows_eligible", "rows_picked", "rows_no_embedding", "rows_used"],
}


class SchemaError(ValueError):
    """A frame does not match its output's schema; the message names the output and the column."""


def to_table(name: str, frame: pd.DataFrame | pa.Table) -> pa.Table:
    """`frame` as a table of exactly `SCHEMAS[name]` (column order, types, required columns non-null)."""
    schema = SCHEMAS[name]
    columns = frame.column_names if isinstance(frame, pa.Table) else [str(c) for c in frame.columns]
    missing = [c for c in schema.names if c not in columns]
    extra = [c for c in columns if c not in schema.names]
    if missing or extra:
        raise SchemaError(f"{name}: missing column(s) {missing}, unexpected column(s) {extra}")
    arrays = []
    for f in schema:
        try:
            if isinstance(frame, pa.Table):
                array = frame.column(f.name).combine_chunks().cast(f.type)
            else:
                column = frame[f.name]
                if pa.types.is_list(f.type) or pa.types.is_binary(f.type):
                    column = column.to_numpy(dtype=object)  # an empty or all-null column is not typed by pandas
                if pa.types.is_list(f.type):
                    _check_lists(column)
                array = pa.array(column, type=f.type, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError, ValueError,
                OverflowError) as err:
            raise SchemaError(f"{name}: column {f.name!r} is not {f.type}: {err}") from None
        if not f.nullable and array.null_count:
            raise SchemaError(f"{name}: column {f.name!r} has {array.null_count} null value(s); it is required")
        arrays.append(array)
    return pa.Table.from_arrays(arrays, schema=schema)


def _check_lists(values) -> None:
    """pyarrow would read a string as a list of characters; a list column holds lists (or nulls) only."""
    for value in values:
        if isinstance(value, (str, bytes)):
            raise TypeError(f"got a {type(value).__name__} where a list belongs: {value!r}")


def write(name: str, frame: pd.DataFrame | pa.Table, path: str | Path) -> Path:
    """Check `frame` against `SCHEMAS[name]`, then write it atomically to `path`."""
    return write_atomic(to_table(name, frame), path)


def empty(name: str) -> pd.DataFrame:
    """A zero-row frame with the output's columns (for a stage that has nothing to write)."""
    return SCHEMAS[name].empty_table().to_pandas()


def write_csv(name: str, frames: list[pd.DataFrame], path: str | Path) -> None:
    """`frames` stacked, as the columns `CSV_COLUMNS[name]` in that order (no row: the header alone), floats
    at 6 decimals; rows missing one of them are a `SchemaError`."""
    columns = CSV_COLUMNS[name]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if len(frame) and (missing := [c for c in columns if c not in frame.columns]):
        raise SchemaError(f"{name}.csv: missing column(s) {missing}")
    frame.reindex(columns=columns).to_csv(path, index=False, float_format="%.6f")

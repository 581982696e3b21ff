"""sample: draw `sample.n` images per source from its corpus format, with counted quality filters.

A source with `exclude: [other]` never draws an image `other` drew (a disjoint analysis sample).
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from stylemap import entry, paths, schemas, shards
from stylemap.corpus.readers.base import CorpusError
from stylemap.corpus.readers.local import is_absent
from stylemap.corpus.sampling import sample_source
from stylemap.files import write_json
from stylemap.stagespec import code_fingerprint, for_stage


def main(root: str | Path = ".") -> dict:
    p = for_stage("sample", root)
    project = paths.Project(root)
    out_dir = project.path(paths.SAMPLE)
    out_dir.mkdir(parents=True, exist_ok=True)
    absent = [name for name, src in p.sources.items() if src.kind == "local" and is_absent(project.root / src.path)]
    shards.prune(out_dir, set(p.sources) - set(absent))  # outputs persist (resume): none of unlisted or absent sources
    for name in absent:  # checked before any work
        if not p.sources[name].optional:
            raise CorpusError(f"source {name!r}: {p.sources[name].path} does not exist or is empty")
        if name == p.train_source:
            raise CorpusError(f"train_source {name!r} is absent ({p.sources[name].path} does not exist or is empty): "
                              "nothing to train on")
    metrics: dict = {name: {"absent": True} for name in absent}  # shown as `<name>.absent: true`, as every stage
    code = code_fingerprint("sample", root)
    rejects: list[pd.DataFrame] = []
    resolved = {name: src.model_copy(update={"path": str(project.root / src.path)}) if src.kind == "local" else src
                for name, src in p.sources.items()}
    drawn: dict[str, frozenset[str]] = {}  # per source, the image names its draw picked (sources are in order)
    for name, src in resolved.items():
        if name in absent:
            continue
        excluded = frozenset().union(*(drawn[other] for other in src.exclude if other in drawn))
        result = sample_source(name, src, p.sample, p.seed, out_dir / name, code, excluded)
        drawn[name] = result.names
        models = shards.read_dir(out_dir / name, columns=["generator"])["generator"]
        metrics[name] = {**_nested(result.tally, result.drawn, name), "ignored_files": result.ignored_files,
                         "excluded_as_drawn_by": {"sources": src.exclude, "rows": result.excluded},
                         "generators": {str(k): int(v) for k, v in models.value_counts().sort_index().items()},
                         "generator_unknown": int(models.isna().sum())}
        rejects.append(result.tally.frame(source=name))
    schemas.write("sample_rejects", pd.concat(rejects, ignore_index=True) if rejects else schemas.empty("sample_rejects"),
                  project.path(paths.SAMPLE_REJECTS))
    write_json(project.metrics("sample"), metrics)
    print(json.dumps(metrics, indent=1))
    return metrics


def _nested(tally, drawn: int, name: str) -> dict:
    """metrics/sample.json keeps one block per source, with rejects and colour-mode conversions by kind."""
    flat = tally.report(drawn, name)
    return {"in": flat[f"{name}.in"], "kept": flat[f"{name}.kept"], "rejected": flat[f"{name}.rejected"],
            "rejected_by": dict(sorted(tally.counts.items())), "converted_from": dict(sorted(tally.converted_from().items())),
            "syntax_stripped": dict(sorted(tally.syntax_stripped().items()))}



if __name__ == "__main__":
    entry.run(main, "sample")

"""label: descriptions -> art-style categories, by keywords (always) and by a few-shot LLM (run_llm).

The LLM labels a seeded subset of each source's descriptions (`label.llm_subset`; 0 = all) for the
agreement report, or every description when it feeds training (`label.train_labeler: llm`).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from stylemap import entry, paths, runner, schemas, shards
from stylemap.corpus.gold import read_gold
from stylemap.files import write_json
from stylemap.labels.agreement import agreement_report, annotation_labels, gold_classes, keyword_labels
from stylemap.labels.taxonomy import load_taxonomy
from stylemap.params import RUN_KNOBS
from stylemap.rejects import Rejects
from stylemap.stagespec import code_fingerprint, for_stage
from stylemap.teacher.label import DESCRIPTION_COLUMNS, label_work

LLM_COLUMNS = [f.name for f in schemas.SCHEMAS["llm_labels"] if f.name != "image_id"]


def llm_inputs(describe_dir: Path, subset: int, seed: int, scratch: Path) -> list[Path]:
    """The description shards the LLM reads: all of them, or one file with a seeded subset of usable ones."""
    if not subset:
        return shards.shard_files(describe_dir)
    descriptions = shards.read_dir(describe_dir, columns=DESCRIPTION_COLUMNS)
    usable = descriptions[descriptions["status"].isin(schemas.LABELLABLE)]
    chosen = usable.sample(n=min(subset, len(usable)), random_state=seed).sort_values("image_id")
    return [schemas.write("llm_inputs", chosen, scratch)]


def main(root: str | Path = ".") -> dict:
    p = for_stage("label", root)
    project = paths.Project(root)
    taxonomy_file, fewshot_file = project.find(p.label.taxonomy), project.find(p.label.fewshot)
    taxonomy = load_taxonomy(taxonomy_file)
    describe_dir, out_dir = project.path(paths.DESCRIBE), project.path(paths.LABELS)
    sources = sorted(d.name for d in describe_dir.iterdir() if d.is_dir())
    for folder in (out_dir, out_dir / "llm", out_dir / "llm_subset"):
        shards.prune(folder, {*sources, "llm", "llm_subset"})  # sources no longer described
    files = {"taxonomy": _sha256(taxonomy_file), "fewshot": _sha256(fewshot_file),  # an edit redoes LLM shards
             "code": code_fingerprint("label", root)}
    metrics: dict = {"taxonomy_version": taxonomy.version, "categories": len(taxonomy.categories)}
    if p.label.run_llm:
        run_llm(p, project, sources, taxonomy, fewshot_file, files)
    for source in sources:
        descriptions = shards.read_dir(describe_dir / source, columns=DESCRIPTION_COLUMNS)
        labels = keyword_labels(descriptions, taxonomy, p.label.max_styles)
        if p.label.run_llm:
            llm = shards.read_dir(out_dir / "llm" / source, columns=["image_id", *LLM_COLUMNS])
            labels = labels.merge(llm, on="image_id", how="left", validate="one_to_one")
        else:
            labels = labels.assign(**{c: None for c in LLM_COLUMNS})
        annotated = shards.read_dir(project.path(paths.SAMPLE, source), columns=["image_id", "annotated_styles"])
        labels["annotation_styles"] = annotation_labels(
            labels["image_id"].map(annotated.set_index("image_id")["annotated_styles"]), taxonomy)
        labels["styles"] = labels[f"{p.label.train_labeler}_styles"]
        labels["taxonomy_version"] = taxonomy.version
        schemas.write("labels", labels, out_dir / f"{source}.parquet")
        gold = gold_classes(labels["image_id"], read_gold(project.root / p.sources[source].path, source)) \
            if source in p.sources else None
        metrics[source] = {**_counts(descriptions, labels), **agreement_report(labels, gold)}
    write_json(project.metrics("label"), metrics)
    return metrics


def run_llm(p, project: paths.Project, sources: list[str], taxonomy, fewshot_file: Path, files: dict) -> None:
    """The LLM labeler over every source's descriptions (or their seeded subsets), one runner call for all sources:
    its engines start once."""
    describe_dir, out_dir = project.path(paths.DESCRIBE), project.path(paths.LABELS)
    model = project.model(p.label.model)
    identity = {**p.label.model_dump(exclude=RUN_KNOBS), "seed": p.seed, "files": files}
    jobs = [shards.Job(source, llm_inputs(describe_dir / source, p.label.llm_subset, p.seed,
                                          out_dir / "llm_subset" / f"{source}.parquet"), out_dir / "llm" / source, identity)
            for source in sources]
    work = label_work(p.label, p.seed, model, taxonomy, fewshot_file)
    stats = runner.run(work, jobs, runner.executor_for(p.label.executor, p.ray), shard_size=p.label.shard_size)
    for source in sources:
        print(f"label llm {source}: {stats[source]['shards']} shards, {stats[source]['shards_resumed']} resumed")


def _counts(descriptions: pd.DataFrame, labels: pd.DataFrame) -> dict:
    """in = labelled + rejected: no usable description, or no style found in it."""
    labelled = labels["styles"].map(len).gt(0).to_numpy()
    ok = descriptions["status"].isin(schemas.LABELLABLE).to_numpy()
    tally = Rejects(kept=int(labelled.sum()))
    tally.count("no_description", (~ok).sum())
    tally.count("no_style", (ok & ~labelled).sum())
    return tally.report(len(descriptions))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


if __name__ == "__main__":
    entry.run(main, "label")

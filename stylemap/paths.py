"""Every stage output path, defined once, relative to a project root.

Stages, tests and dvc.yaml agree on these (tests/test_dvc_yaml.py checks that each dvc.yaml out is one of
them). A stage gets its project with `Project(root)`; "." is the DVC workspace.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

DEMO = "data/demo"
REPACKAGED = "data/horde-wds"  # the Horde corpus as img2dataset webdataset output (repackage stage)
SAMPLE = "data/sample"
SAMPLE_REJECTS = "data/sample/rejects.parquet"
DESCRIBE = "data/describe"
LLM_MODEL = "data/models/gemma3-270m"  # the CPU profile's label.model, written by convert_llm
LABELS = "data/labels"
RECIPES = "data/balance/recipes.parquet"
EMBED = "data/embed"
AUGMENTED = "augmented"  # data/embed/augmented holds the embedded balance recipes; no source may use the name
ENCODER_CARD = "data/embed/encoder.json"
MODEL = "data/model"
PROBE = "data/model/probe.safetensors"
CLASSES = "data/model/classes.json"
SPLIT = "data/model/split.parquet"
MODEL_CARD_JSON = "data/model/model_card.json"
MODEL_CARD_MD = "data/model/model_card.md"
VAL_PREDICTIONS = "data/model/val_predictions.parquet"
EVAL_NOTES = "data/model/eval_notes.json"
CALIBRATION = "data/model/calibration.json"
PREDICT = "data/predict"
ASKED = "data/asked"  # per image: the styles its prompt asks for, and the probe's top-1
AUDIT_ISSUES = "data/audit/label_issues.parquet"
AUDIT_REVIEW = "data/audit/review"  # JPEG thumbnails of the most suspect labels + index.csv
MAP = "data/map"
EXPLORE = "data/explore"
DVCLIVE = "dvclive"
METRICS = "metrics"
PLOTS = "plots"
CONFUSION = "plots/confusion.csv"
PER_CLASS = "plots/per_class.csv"
PLATFORMS = "plots/platforms.csv"
AMBIGUITY = "plots/ambiguity.csv"
PREVALENCE = "plots/prevalence.csv"
PREVALENCE_DIFFERENCES = "plots/prevalence_differences.csv"
SHIFT = "plots/shift.csv"
TRENDS = "plots/trends.csv"
GOLD_SCORES = "plots/gold_scores.csv"  # evaluate's probes scored on the gold source's gold images
GENERATOR_PREVALENCE = "plots/generator_prevalence.csv"  # quantify's shares per generating model within a platform
GENERATOR_DIFFERENCES = "plots/generator_differences.csv"  # ... and their pairwise differences
GOLD_PREVALENCE = "plots/gold_prevalence.csv"  # quantify's shares of the gold images beside their true shares
LABEL_NOISE = "plots/label_noise.csv"
ASKED_SHOWN = "plots/asked_shown.csv"  # asked style x shown style, images per pair and platform
FOLLOW_RATES = "plots/follow_rates.csv"  # per platform and style: P(shown = asked), raw and ACC-adjusted
MAP_PNG = "plots/map"
REPORT = "plots/report.html"


@dataclass(frozen=True)
class Project:
    """A project directory: `Project(root).path(SAMPLE)` -> root/data/sample."""

    root: Path

    def __init__(self, root: str | Path = "."):
        object.__setattr__(self, "root", Path(root))

    def path(self, relative: str, *parts: str) -> Path:
        return self.root.joinpath(relative, *parts)

    def find(self, relative: str) -> Path:
        """A params path to a data file (taxonomy, prompt template): absolute as given, else under the
        project if it is there, else shipped with the repository (stylemap/...)."""
        path = Path(relative)
        if path.is_absolute() or (self.root / path).exists():
            return self.root / path
        return REPO / path

    def model(self, name: str) -> str | Path:
        """A model param: a project folder (`data/models/...`, made by a stage) as a Path, else a Hub id as is."""
        return self.root / name if Path(name).parts[:1] == ("data",) else name

    def metrics(self, stage: str) -> Path:
        return self.root / METRICS / f"{stage}.json"

"""Shared fixtures: params built from the committed profile, the shared Horde corpus, a small demo corpus."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from stages.params import Params, parse

ROOT = Path(__file__).resolve().parents[1]
HORDE = ROOT.parent / "shared" / "data" / "horde-diffusiondb"


def _merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@pytest.fixture
def make_params():
    """make_params({"sample": {"n": 10}}) -> Params: the CPU profile with overrides merged in, validated.

    `replace` sets whole top-level keys instead of merging (e.g. a different `sources` mapping)."""
    base = yaml.safe_load((ROOT / "params.yaml").read_text())

    def build(override: dict | None = None, replace: dict | None = None) -> Params:
        return parse({**_merge(base, override or {}), **(replace or {})})

    return build


@pytest.fixture(scope="session")
def horde() -> Path:
    if not HORDE.exists():
        pytest.skip(f"shared Horde corpus absent at {HORDE}")
    return HORDE


@pytest.fixture(scope="session")
def demo_corpus(tmp_path_factory) -> Path:
    """A small demo corpus: 10 subjects x 6 styles x 1 crop + 4 bad-prompt rows."""
    from stages import demo

    out = tmp_path_factory.mktemp("demo")
    demo.write_corpus(demo.build_rows(crops_per_subject=1, size=96, seed=0), out, size=96)
    return out

"""Shared fixtures: the one params builder, the shared Horde corpus, a small demo corpus."""
from __future__ import annotations

from pathlib import Path

import pytest

from stylemap.labels.taxonomy import load_taxonomy
from stylemap.paths import REPO
from tests.support import fixtures as testing


@pytest.fixture
def make_params():
    """make_params({"sample.n": 10}) -> Params: the CPU profile with overrides merged in, validated."""
    return testing.make_params


@pytest.fixture(scope="session")
def horde() -> Path:
    if not testing.HORDE.exists():
        pytest.skip(f"shared Horde corpus absent at {testing.HORDE}")
    return testing.HORDE


@pytest.fixture(scope="session")
def taxonomy():
    return load_taxonomy(REPO / "stylemap/labels/taxonomy.yaml")


@pytest.fixture(scope="session")
def demo_corpus(tmp_path_factory) -> Path:
    """A small demo corpus: 10 subjects x 6 styles x 1 crop + 4 bad-prompt rows."""
    from stylemap.corpus import demo

    out = tmp_path_factory.mktemp("demo")
    demo.write_corpus(demo.build_rows(crops_per_subject=1, side=96, seed=0), out, side=96)
    return out


@pytest.fixture(scope="session")
def gemma_dir(tmp_path_factory) -> Path:
    """Gemma 3 270M converted once per test session (the label tests and the production rehearsal share it)."""
    from stylemap.teacher.client import VLLM_PYTHON

    if not VLLM_PYTHON.exists():
        pytest.skip(f"{VLLM_PYTHON} missing: run bash .ci/setup-vllm")
    return testing.convert_gemma(tmp_path_factory.mktemp("gemma"))


@pytest.fixture(scope="session")
def gemma_gguf(gemma_dir) -> Path:
    """The GGUF gemma_dir was converted from."""
    return next(gemma_dir.parent.glob("*.gguf"))

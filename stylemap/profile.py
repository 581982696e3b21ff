"""params.yaml with its profile's overrides merged in, validated: the params a run uses.

`load(root)` reads `params.yaml`, applies the profile's overrides (`profile: production` merges
`stylemap/profiles/production.yaml` over it) and validates the result (`parse`). A profile states only
what differs from params.yaml, so the CPU profile is params.yaml itself.
"""
from __future__ import annotations

import copy
from pathlib import Path

import yaml
from pydantic import ValidationError

from stylemap.entry import UserError
from stylemap.params import Params

PROFILES = Path(__file__).resolve().parent / "profiles"


RUN_CACHE_IGNORES = {"size", "nfiles"}  # keys dvc.stage.cache drops, at any depth, from a run's key


class ParamsError(UserError):
    """params file is invalid; the message names every offending key."""


def parse(raw: dict, origin: str = "params") -> Params:
    """Validate a params mapping; YAML numbers like `1` are accepted where floats are expected."""
    ignored = [".".join(path) for path in _key_paths(raw) if path[-1] in RUN_CACHE_IGNORES]
    if ignored:
        raise ParamsError(f"{origin}: key {ignored[0]} is named like one DVC's run cache leaves out of its key "
                          f"({' and '.join(sorted(RUN_CACHE_IGNORES))}: dvc/stage/cache.py), so a change to it would "
                          "not re-run its stage; rename it")
    try:
        return Params.model_validate(raw, strict=False)
    except ValidationError as err:
        lines = [f"  {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors()]
        raise ParamsError(f"{origin} is invalid:\n" + "\n".join(lines)) from None


def _key_paths(node, prefix: tuple = ()):
    """Every key's path in a nested mapping: the names users choose (sources, vllm_args keys) included."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*prefix, str(key))
            yield from _key_paths(value, (*prefix, str(key)))


def merge(base: dict, override: dict) -> dict:
    """`override` deep-merged into a copy of `base`: mappings merge key by key, anything else replaces."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _read_yaml(path: Path) -> dict:
    raw = yaml.safe_load(path.read_text())
    if not isinstance(raw, dict):
        raise ParamsError(f"{path} must hold a mapping, got {type(raw).__name__}")
    return raw


def resolve(raw: dict, origin: str = "params.yaml") -> dict:
    """The effective mapping: `raw` with its profile's overrides applied (the cpu profile has none)."""
    profile = raw.get("profile", "cpu")
    if profile == "cpu":
        return raw
    overrides = PROFILES / f"{profile}.yaml"
    if not overrides.exists():
        known = ["cpu", *sorted(p.stem for p in PROFILES.glob("*.yaml"))]
        raise ParamsError(f"{origin}: profile {profile!r} is unknown; known: {known}")
    profile_raw = _read_yaml(overrides)
    merged = merge(raw, profile_raw)
    if "sources" in profile_raw:  # a profile names its own corpora: the CPU profile's demo ones do not carry over
        merged["sources"] = profile_raw["sources"]
    return merged


def load(root: str | Path = ".", profile: str | None = None) -> Params:
    """Validated params of the project at `root`; `profile` overrides the file's `profile` key."""
    path = Path(root) / "params.yaml"
    raw = _read_yaml(path)
    if profile is not None:
        raw = {**raw, "profile": profile}
    return parse(resolve(raw, str(path)), f"{path} (profile {raw.get('profile', 'cpu')})")

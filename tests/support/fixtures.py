"""Test and bench fixtures (tests/ and bench/ both import them).

- `make_params` / `write_params`: the one params builder: the repository's params.yaml with dotted-key
  overrides, validated (and written into a temporary project directory for stages to read).
- `horde_rows` / `write_journeydb`: the shared Horde images, and a JourneyDB tree packed from any rows, so the
  corpus readers are tested and benchmarked on real generated images.
- `write_diffusiondb`: a DiffusionDB-shaped corpus of any size whose rows are kept or rejected at known rates,
  for the Hub sampling tests and bench/bench_download.py (served by `tests.support.hub_server`).
- Four visually distinct styles drawn with numpy, written as real sample shards and balance recipes
  (`make_project`), and a randomly initialised open_clip checkpoint for the production loading path.
"""
from __future__ import annotations

import io
import json
import subprocess
import tarfile
import uuid
import zipfile
from pathlib import Path

import imagehash
import numpy as np
import pandas as pd
import yaml
from PIL import Image, ImageFilter

from stylemap import schemas
from stylemap.params import Params
from stylemap.paths import REPO
from stylemap.profile import merge, parse, resolve

HORDE = REPO.parent / "shared/data/horde-diffusiondb"
STYLES = ["pixel_art", "poster", "sketch", "watercolor"]


# ---------- synthetic fixture ----------

def draw(style: str, rng: np.random.Generator, size: int = 96) -> Image.Image:
    """One image whose look is typical of `style` (content random, so only style is shared)."""
    if style == "sketch":  # grey paper with dark strokes
        img = np.full((size, size), 235, np.uint8)
        for _ in range(12):
            r, c = rng.integers(0, size, 2)
            length = rng.integers(10, size // 2)
            if rng.random() < 0.5:
                img[r, c:c + length] = rng.integers(20, 90)
            else:
                img[r:r + length, c] = rng.integers(20, 90)
        return Image.fromarray(img).convert("RGB").filter(ImageFilter.GaussianBlur(0.6))
    if style == "poster":  # few saturated flat colours in large shapes
        palette = rng.choice([[230, 30, 40], [250, 210, 0], [20, 60, 220], [10, 10, 10], [0, 180, 90]], 3)
        img = np.zeros((size, size, 3), np.uint8) + palette[0].astype(np.uint8)
        for colour in palette[1:]:
            r0, c0 = rng.integers(0, size // 2, 2)
            img[r0:r0 + rng.integers(20, size // 2), c0:c0 + rng.integers(20, size // 2)] = colour
        return Image.fromarray(img)
    if style == "pixel_art":  # tiny random palette image upscaled with hard edges
        palette = rng.integers(0, 256, (6, 3)).astype(np.uint8)
        small = palette[rng.integers(0, 6, (12, 12))]
        return Image.fromarray(small).resize((size, size), Image.Resampling.NEAREST)
    # watercolor: soft blended pastel blobs with paper noise
    base = rng.uniform(0.55, 0.95, (6, 6, 3))
    img = Image.fromarray((base * 255).astype(np.uint8)).resize((size, size), Image.Resampling.BICUBIC)
    img = np.asarray(img.filter(ImageFilter.GaussianBlur(4)), np.float32) + rng.normal(0, 4, (size, size, 3))
    return Image.fromarray(img.clip(0, 255).astype(np.uint8))


def same_pixels(stored: bytes, original: bytes) -> bool:
    """Whether a stored image (sample re-encodes losslessly) shows the pixels the original decodes to."""
    from stylemap.corpus.images import decode_rgb

    return np.array_equal(np.asarray(decode_rgb(stored)), np.asarray(decode_rgb(original)))


def encode_png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def sample_frame(source: str, per_style: int, seed: int = 0, per_prompt: int = 2) -> pd.DataFrame:
    """Sample-shard rows for `per_style` images of each style; consecutive images share a prompt."""
    rng = np.random.default_rng(seed)
    rows = []
    for style in STYLES:
        for i in range(per_style):
            image = draw(style, rng)
            name = f"{style}-{i:03d}.png"
            rows.append({"image_id": f"{source}/{name}", "source": source, "image_name": name, "part_id": 1,
                         "prompt": f"a {style} picture, scene {i // per_prompt}", "seed": i, "cfg": 7.0, "steps": 30,
                         "sampler": "k_euler", "width": image.width, "height": image.height,
                         "phash": str(imagehash.phash(image)), "style": style, "image_bytes": encode_png(image),
                         "timestamp": pd.Timestamp("2022-08-01", tz="UTC"), "annotated_styles": None,
                         "image_nsfw": 0.0, "image_nsfw_by": "corpus", "generator": None})
    return pd.DataFrame(rows)


def raw_params(overrides: dict | None = None, replace: dict | None = None) -> dict:
    """The repository's params.yaml with `overrides` merged in and `replace`'s top-level keys set whole.

    `overrides` keys may be dotted ({"embed.loader_workers": 0}) or nested ({"embed": {"loader_workers": 0}}).
    Replaced `sources` without the gold source also drop `gold_source` (a test's own corpora have no gold)."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    for key, value in (overrides or {}).items():
        *path, last = key.split(".")
        nested = value
        for part in reversed([*path, last][1:]):
            nested = {part: nested}
        raw = merge(raw, {key.split(".")[0]: nested})
    raw = {**raw, **(replace or {})}
    if raw.get("gold_source") and raw["gold_source"] not in raw["sources"]:
        raw["gold_source"] = ""
    return raw


def make_params(overrides: dict | None = None, replace: dict | None = None) -> Params:
    """Validated params (profile overrides applied) from `raw_params`."""
    return parse(resolve(raw_params(overrides, replace)))


def write_params(root: Path, overrides: dict | None = None, replace: dict | None = None) -> Params:
    """A project directory's params.yaml, as stages read it; returns the validated params."""
    raw = raw_params(overrides, replace)
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return parse(resolve(raw))


def make_project(root: Path, per_style: int = 10, n_augmented: int = 8, corrupt: bool = True,
                 horde: bool = False, overrides: dict | None = None) -> tuple[Params, pd.DataFrame]:
    """A project with params.yaml, data/sample/demo (+ optionally horde) shards and data/balance/recipes.parquet."""
    frame = sample_frame("demo", per_style)
    if corrupt:  # one undecodable image in the sample (not in the recipes)
        frame = pd.concat([frame, frame.iloc[[0]].assign(image_id="demo/broken.png", image_name="broken.png",
                                                         image_bytes=b"\x89PNG not really")], ignore_index=True)
    shard = 16
    for i in range(0, len(frame), shard):
        schemas.write("sample", frame.drop(columns="style").iloc[i:i + shard], root / f"data/sample/demo/shard-{i // shard:05d}.parquet")
    if horde:
        schemas.write("sample", sample_frame("horde", 2, seed=1).drop(columns="style"), root / "data/sample/horde/shard-00000.parquet")
    originals = frame[frame["image_id"] != "demo/broken.png"]
    recipes = pd.DataFrame({"image_id": originals["image_id"], "label": originals["style"],
                            "styles": originals["style"].map(lambda s: [s]), "aug_seed": -1})
    rng = np.random.default_rng(1)
    copies = recipes.sample(n=n_augmented, random_state=1).assign(aug_seed=rng.integers(0, 2**31, n_augmented))
    recipes = pd.concat([recipes, copies], ignore_index=True)
    schemas.write("recipes", recipes, root / "data/balance/recipes.parquet")
    params = {"embed.loader_workers": 0, "embed.shard_size": 16, "embed.batch_size": 8, **(overrides or {})}
    return write_params(root, params), frame


def save_random_clip(path: Path, arch: str = "ViT-S-32") -> Path:
    """A randomly initialised open_clip checkpoint on disk: exercises the production loading path offline."""
    import open_clip
    import torch

    torch.manual_seed(0)
    torch.save(open_clip.create_model(arch, pretrained=None).state_dict(), path)
    return path


def in_vllm_venv(code: str, *args: str, timeout: int = 600) -> str:
    """Run Python `code` in .venv-vllm (vLLM's own torch) from the repository root; its stdout."""
    from stylemap.teacher.client import VLLM_PYTHON

    done = subprocess.run([str(VLLM_PYTHON), "-c", code, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)
    if done.returncode:
        raise RuntimeError(f".venv-vllm: {code[:80]!r} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def convert_gemma(dest: Path) -> Path:
    """The Gemma 3 270M GGUF package converted to an HF folder at dest/gemma3-270m (~75 s); returns the folder.
    The GGUF itself stays at dest/<its name> for fidelity checks."""
    in_vllm_venv("import sys; from pathlib import Path; from stylemap.teacher.convert import assemble_gguf, convert; "
                 "d = Path(sys.argv[1]); convert(assemble_gguf(d), d / 'gemma3-270m')", str(dest))
    return dest / "gemma3-270m"


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One of: flip bytes, truncate, splice random bytes, overwrite a header field with an extreme value."""
    raw = bytearray(data)
    kind = rng.integers(4)
    if kind == 0:
        for i in rng.integers(0, len(raw), rng.integers(1, 8)):
            raw[i] = int(rng.integers(256))
    elif kind == 1:
        raw = raw[: int(rng.integers(0, len(raw)))]
    elif kind == 2:
        at = int(rng.integers(0, len(raw)))
        raw[at:at] = rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
    else:
        at = int(rng.integers(0, min(len(raw), 64)))
        raw[at:at + 4] = rng.choice([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\xff\xff"])
    return bytes(raw)


# ---------- corpus layouts packed from real images ----------

def horde_rows(limit: int | None = None) -> list[dict]:
    """The shared Horde corpus's first `limit` images: name, bytes (WebP), prompt, Horde part and Horde style."""
    meta = pd.read_parquet(HORDE / "metadata.parquet").head(limit)
    styles = pd.read_csv(HORDE / "styles.csv").set_index("image_name")["horde_style"]
    rows = []
    for part_id, part in meta.groupby("part_id", sort=True):
        with zipfile.ZipFile(HORDE / "images" / f"part-{part_id:06d}.zip") as zf:
            rows += [{"image_name": r.image_name, "data": zf.read(r.image_name), "prompt": r.prompt,
                      "part_id": int(part_id), "style": styles.get(r.image_name)} for r in part.itertuples()]
    return rows


# what a DiffusionDB-shaped corpus row is made to be: kept, or rejected for one reason, and with what share
ROW_MIX = {"kept": 0.5, "too_short": 0.2, "nsfw_image": 0.1, "nsfw_prompt": 0.1, "language": 0.09, "undecodable": 0.01}


def write_diffusiondb(root: Path, parts: int, per_part: int, seed: int = 0, side: int = 64,
                      mix: dict[str, float] = ROW_MIX) -> pd.DataFrame:
    """A DiffusionDB 2M-layout corpus at root, like the Hub's (names like its UUIDs, stored PNG members, the part
    JSON last, then the directory), of `parts` parts with `per_part` images drawn from 64 noisy styled `side` px
    PNGs; each row's prompt, NSFW scores and image make it kept or rejected for the reason drawn from `mix`.
    Returns the metadata with each row's `outcome` and PNG `image_bytes` (its size), written part by part."""
    from stylemap.corpus import demo  # scikit-image: imported only by those who build corpora

    rng = np.random.default_rng(seed)
    pool = []
    for i in range(64):
        pixels = np.asarray(draw(STYLES[i % len(STYLES)], rng, side), np.float32) + rng.normal(0, 6, (side, side, 3))
        pool.append(encode_png(Image.fromarray(pixels.clip(0, 255).astype(np.uint8))))
    good = [t.format(s) for t in demo.PROMPTS.values() for s in demo.SUBJECTS.values()]
    prompts = {"too_short": "a cat, watercolor", "language": demo.BAD_PROMPTS[0][0]}
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for part_id in range(1, parts + 1):
        entries, name = {}, f"part-{part_id:06d}"
        with zipfile.ZipFile(root / "images" / f"{name}.zip", "w") as zf:
            for outcome in rng.choice(list(mix), per_part, p=list(mix.values())):
                image_name = f"{uuid.UUID(bytes=rng.bytes(16))}.png"
                data = pool[rng.integers(len(pool))]
                data = data[: len(data) // 2] if outcome == "undecodable" else data
                prompt = prompts.get(outcome, good[rng.integers(len(good))])
                zf.writestr(zipfile.ZipInfo(image_name, demo.ZIP_TIME), data)
                entries[image_name] = {"p": prompt, "se": int(rng.integers(2**31)), "c": 7.0, "st": 50, "sa": 8}
                rows.append({"image_name": image_name, "prompt": prompt, "part_id": part_id, "outcome": outcome,
                             "seed": entries[image_name]["se"], "image_bytes": len(data),
                             "image_nsfw": 0.9 if outcome == "nsfw_image" else 0.1,
                             "prompt_nsfw": 0.9 if outcome == "nsfw_prompt" else 0.1})
            zf.writestr(zipfile.ZipInfo(f"{name}.json", demo.ZIP_TIME), json.dumps(entries))
    meta = pd.DataFrame(rows)
    n = len(meta)
    table = pd.DataFrame({
        "image_name": meta["image_name"], "prompt": meta["prompt"], "part_id": meta["part_id"].astype("uint16"),
        "seed": meta["seed"].astype("uint32"), "step": np.full(n, 50, "uint16"), "cfg": np.full(n, 7.0, "float32"),
        "sampler": np.full(n, 8, "uint8"), "width": np.full(n, side, "uint16"), "height": np.full(n, side, "uint16"),
        "user_name": "stylemap-bench", "timestamp": demo.made_at(meta["seed"].to_numpy()),
        "image_nsfw": meta["image_nsfw"].astype("float32"), "prompt_nsfw": meta["prompt_nsfw"].astype("float32")})
    table.to_parquet(root / "metadata.parquet", index=False)
    return meta


def write_journeydb(root: Path, lines: list, parts: dict[int, dict], split: str = "train") -> Path:
    """A JourneyDB tree at root: `lines` (dicts, or text written as is: a malformed line) in the split's annotation
    tgz, and parts {part_id: {member name: bytes, or a TarInfo for a link/directory}} as data/<split>/imgs/NNN.tgz."""
    from stylemap.corpus.readers.journeydb import ANNOTATIONS

    folder = root / "data" / split
    (folder / "imgs").mkdir(parents=True, exist_ok=True)
    jsonl = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines).encode()
    _write_tgz(folder / ANNOTATIONS[split], {ANNOTATIONS[split].removesuffix(".tgz"): jsonl})
    for part_id, members in parts.items():
        _write_tgz(folder / "imgs" / f"{part_id:03d}.tgz", members)
    return root


def _write_tgz(path: Path, members: dict) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            if isinstance(data, tarfile.TarInfo):
                tar.addfile(data)
            else:
                info = tarfile.TarInfo(name)
                info.size, info.mtime = len(data), 1_700_000_000
                tar.addfile(info, io.BytesIO(data))

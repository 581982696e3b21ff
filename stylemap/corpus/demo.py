"""The demo corpus: a small DiffusionDB-layout corpus built from photos that ship with scikit-image.

Why: a fresh machine has no internet and no GPU, yet the pipeline should produce a real result.
Each photo is cropped at random and rendered in six visually distinct styles by image filters,
with a prompt naming the subject and the style, then packed exactly like DiffusionDB 2M:
`images/part-NNNNNN.zip` (PNG files + `part-NNNNNN.json` with keys p/se/c/st/sa) and a 13-column
`metadata.parquet`. A few rows carry prompts the sample filters must reject, so the CPU profile
exercises them too.
"""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy import ndimage
from skimage import color, data, filters, transform, util

SUBJECTS = {  # scikit-image sample photo -> what a prompt would call it
    "astronaut": "an astronaut in a white spacesuit",
    "chelsea": "a tabby cat looking sideways",
    "coffee": "a cup of coffee on a saucer",
    "rocket": "a rocket standing on the launch pad",
    "hubble_deep_field": "a field of distant galaxies",
    "immunohistochemistry": "stained tissue cells under a microscope",
    "retina": "the back of a human eye",
    "camera": "a man holding a film camera",
    "coins": "a row of old coins",
    "clock": "an old clock on a wall",
}

PROMPTS = {  # style -> prompt template; each names the style with taxonomy synonyms only of that style
    "photo": "a photograph of {}, natural light, sharp focus, shot on a 50mm lens, high detail, true colours",
    "pencil_sketch": "a pencil sketch of {}, graphite on paper, fine hatching, soft shading, careful monochrome lines",
    "watercolor": "a watercolor painting of {}, soft washes of colour bleeding into textured paper, loose brushwork",
    "oil_painting": "an oil painting of {}, thick impasto strokes on canvas, rich saturated pigments, warm varnish",
    "pixel_art": "pixel art of {}, 16-bit retro game sprite, limited palette, crisp blocky pixels, nostalgic arcade look",
    "pop_art": "pop art poster of {}, bold posterized colours, halftone dots, high contrast screen print like andy warhol",
}

BAD_PROMPTS = [  # (prompt, cfg): rows the sample filters are expected to reject, one per reason
    ("un chat roux dormant sur un canapé bleu dans un salon ensoleillé avec des plantes vertes et un tapis", 7.0),
    ("cat, watercolor", 7.0),
    ("🎨🎨🐱✨✨🌈🌈🔥🔥💫💫🎨🐱✨🌈🔥💫🎨🐱✨🌈", 7.0),
    ("a watercolor painting of a tabby cat, soft washes of colour bleeding into textured paper, loose brushwork", 99.0),
]

PART_SIZE = 100
ZIP_TIME = (2022, 8, 1, 0, 0, 0)  # fixed entry timestamps: the same params give byte-identical zips (one DVC hash)


def _photo(name: str) -> np.ndarray:
    image = getattr(data, name)()
    return util.img_as_float(color.gray2rgb(image) if image.ndim == 2 else image[..., :3])


def _crop(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    h, w = image.shape[:2]
    side = int(min(h, w) * rng.uniform(0.6, 1.0))
    y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    return transform.resize(image[y : y + side, x : x + side], (size, size), anti_aliasing=True)


def render(image: np.ndarray, style: str) -> np.ndarray:
    """Apply one style filter to a float RGB image in [0, 1]; returns float RGB in [0, 1]."""
    if style == "photo":
        return image
    if style == "pencil_sketch":  # colour-dodge of the grey image with its blurred negative
        grey = color.rgb2gray(image)
        blurred = filters.gaussian(1 - grey, sigma=3)
        sketch = np.clip(grey / np.maximum(1 - blurred, 1e-3), 0, 1) ** 3
        return color.gray2rgb(sketch)
    if style == "watercolor":  # flat washes, pale pigment, paper grain
        washed = np.stack([ndimage.median_filter(image[..., c], size=9) for c in range(3)], axis=-1)
        washed = filters.gaussian(washed, sigma=2, channel_axis=-1)
        paper = 1 + 0.06 * filters.gaussian(np.random.default_rng(0).standard_normal(image.shape[:2]), sigma=1)
        return np.clip((0.55 * washed + 0.45) * paper[..., None], 0, 1)
    if style == "oil_painting":  # blocky strokes, saturated, with relief from an emboss-like shading
        strokes = np.stack([ndimage.median_filter(image[..., c], size=7) for c in range(3)], axis=-1)
        hsv = color.rgb2hsv(strokes)
        hsv[..., 1] = np.clip(hsv[..., 1] * 1.6, 0, 1)
        relief = ndimage.sobel(color.rgb2gray(strokes), axis=0)
        return np.clip(color.hsv2rgb(hsv) + 0.15 * relief[..., None], 0, 1)
    if style == "pixel_art":  # 32 px grid, 4 levels a channel, nearest-neighbour upscale
        small = transform.resize(image, (32, 32), anti_aliasing=True)
        return transform.resize(np.round(small * 3) / 3, image.shape, order=0)
    if style == "pop_art":  # posterise to 3 levels, push saturation, halftone dot mask
        hsv = color.rgb2hsv(image)
        hsv[..., 1] = np.clip(hsv[..., 1] * 2.5 + 0.3, 0, 1)
        poster = np.round(color.hsv2rgb(hsv) * 2) / 2
        yy, xx = np.mgrid[: image.shape[0], : image.shape[1]]
        dots = ((np.sin(yy / 2.0) * np.sin(xx / 2.0)) > -0.6)[..., None]
        return poster * dots
    raise ValueError(f"unknown demo style {style!r}; known: {sorted(PROMPTS)}")


def build_rows(crops_per_subject: int, side: int, seed: int) -> list[dict]:
    """All demo images as rows (PNG bytes + DiffusionDB metadata), deterministic for a seed."""
    rng = np.random.default_rng(seed)
    rows = []
    for subject, phrase in SUBJECTS.items():
        photo = _photo(subject)
        for _ in range(crops_per_subject):
            for style, template in PROMPTS.items():  # each image its own crop: no pixel-level twins across styles
                rows.append({"pixels": render(_crop(photo, side, rng), style), "prompt": template.format(phrase), "cfg": 7.0})
    for prompt, cfg in BAD_PROMPTS:
        rows.append({"pixels": _crop(_photo("chelsea"), side, rng), "prompt": prompt, "cfg": cfg})
    for i, row in enumerate(rows):
        buf = io.BytesIO()
        Image.fromarray(util.img_as_ubyte(np.clip(row.pop("pixels"), 0, 1))).save(buf, format="PNG")
        row.update(image_name=f"demo-{i:05d}.png", png=buf.getvalue(), seed=int(rng.integers(2**31)), part_id=1 + i // PART_SIZE)
    return rows


def made_at(seeds: np.ndarray) -> pd.DatetimeIndex:
    """Synthetic creation times over DiffusionDB's collection window (Aug-Dec 2022), one per image from its
    seed, so the demo exercises the trends-by-month path; demo trends are flat by construction."""
    days = seeds.astype(np.int64) % 150
    return pd.Timestamp("2022-08-01", tz="UTC") + pd.to_timedelta(days, unit="D")


def write_corpus(rows: list[dict], out: Path, side: int) -> None:
    """Pack rows in DiffusionDB 2M's layout."""
    (out / "images").mkdir(parents=True, exist_ok=True)
    for part_id, part in pd.DataFrame(rows).groupby("part_id"):
        name = f"part-{part_id:06d}"
        meta = {r.image_name: {"p": r.prompt, "se": r.seed, "c": r.cfg, "st": 50, "sa": 8} for r in part.itertuples()}
        with zipfile.ZipFile(out / "images" / f"{name}.zip", "w") as zf:
            for r in part.itertuples():
                zf.writestr(zipfile.ZipInfo(r.image_name, ZIP_TIME), r.png)
            zf.writestr(zipfile.ZipInfo(f"{name}.json", ZIP_TIME), json.dumps(meta))
    frame = pd.DataFrame(rows)
    metadata = pd.DataFrame({
        "image_name": frame["image_name"], "prompt": frame["prompt"], "part_id": frame["part_id"].astype("uint16"),
        "seed": frame["seed"].astype("uint32"), "step": np.full(len(frame), 50, "uint16"), "cfg": frame["cfg"].astype("float32"),
        "sampler": np.full(len(frame), 8, "uint8"), "width": np.full(len(frame), side, "uint16"),
        "height": np.full(len(frame), side, "uint16"), "user_name": "stylemap-demo",
        "timestamp": made_at(frame["seed"].to_numpy()), "image_nsfw": np.zeros(len(frame), "float32"),
        "prompt_nsfw": np.zeros(len(frame), "float32"),
    })
    metadata.to_parquet(out / "metadata.parquet", index=False)


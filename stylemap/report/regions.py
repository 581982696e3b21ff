"""Named regions of the shared map: a density grid the explorer draws as contours, and labels for its dense regions.

Why: a map of dots says nothing until one hovers. As Embedding Atlas and WizMap do, dense regions are found on a
kernel density estimate and each is named by what is in it: its dominant styles with their shares, and its most
distinctive prompt words by c-TF-IDF (a word's frequency in the region against its frequency over all regions).
The density is a 2-D histogram on a GRID x GRID lattice over the explorer's drawing square, smoothed by a Gaussian:
linear in the points, so a million points cost a second. Regions are the connected areas above each of LEVELS
(fractions of the peak density): the lowest level gives a few broad regions, shown zoomed out; the higher ones
smaller regions, shown as one zooms in. Only aggregates leave this module (a density, counts, shares, words that
occur in several prompts), so platforms whose terms forbid sharing per-image data may contribute to the density
and counts; their prompts are never read for words.
"""
from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pandas as pd
from scipy import ndimage
from sklearn.feature_extraction.text import CountVectorizer

GRID = 128  # density cells per side of the drawing square
SIGMA = 2.0  # Gaussian smoothing, in cells
LEVELS = (0.08, 0.3, 0.6)  # contour and region thresholds, as fractions of the peak density
MAX_REGIONS = (8, 24, 48)  # the largest regions labelled per level
MIN_SHARE = 0.005  # a region holds at least this share of the points (and MIN_POINTS) to be labelled
MIN_POINTS = 5
WORDS = 3  # distinctive prompt words per label
MIN_WORD_DOCS = 2  # a word must occur in this many prompts of the region: no label quotes a single prompt
TOKEN = re.compile(r"(?u)\b[^\W\d_]{3,}\b")  # words of three letters or more


def bounds(xy: np.ndarray) -> list[float]:
    """[xmin, xmax, ymin, ymax] of a layout: the frame every view of the shared map (PNG, explorer page) uses."""
    return [float(xy[:, 0].min()), float(xy[:, 0].max()), float(xy[:, 1].min()), float(xy[:, 1].max())]


def drawing_square(xy: np.ndarray, bounds: list[float]) -> np.ndarray:
    """Coordinates in the explorer's drawing square [-1, 1]², as explorer.js `normalised` maps them."""
    xmin, xmax, ymin, ymax = bounds
    half = max(xmax - xmin, ymax - ymin) / 2 * 1.05 or 1.0
    return np.column_stack([(xy[:, 0] - (xmin + xmax) / 2) / half, (xy[:, 1] - (ymin + ymax) / 2) / half])


def density(square: np.ndarray) -> np.ndarray:
    """The smoothed point density on the GRID x GRID lattice over [-1, 1]² (row = y, column = x), peak 1."""
    counts, _, _ = np.histogram2d(square[:, 1], square[:, 0], bins=GRID, range=[[-1, 1], [-1, 1]])
    smooth = ndimage.gaussian_filter(counts, SIGMA)
    return smooth / smooth.max() if smooth.max() > 0 else smooth


def distinctive_words(docs: list[str]) -> list[list[str]]:
    """The WORDS most distinctive words of each document (one per region, its prompts joined) by c-TF-IDF."""
    if not any(doc.strip() for doc in docs):
        return [[] for _ in docs]
    vectorizer = CountVectorizer(stop_words="english", token_pattern=TOKEN.pattern)
    try:
        counts = vectorizer.fit_transform(docs).toarray().astype(float)
    except ValueError:  # only stop words
        return [[] for _ in docs]
    tf = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    idf = np.log(1 + counts.sum(axis=1).mean() / np.maximum(counts.sum(axis=0), 1))
    score = tf * idf
    vocab = vectorizer.get_feature_names_out()
    return [[vocab[j] for j in np.argsort(-row, kind="stable")[:WORDS] if row[j] > 0] for row in score]


def regions(square: np.ndarray, top1: pd.Series, prompts: pd.Series, grid: np.ndarray) -> list[dict]:
    """Per level, its labelled regions: {level, x, y (peak, drawing square), n, styles [[style, share]...],
    words}. `prompts` holds None where a point's prompt may not be read (a restricted platform)."""
    cell = np.clip(((square + 1) / 2 * GRID).astype(int), 0, GRID - 1)  # (column, row) of each point
    out = []
    for level, (threshold, most) in enumerate(zip(LEVELS, MAX_REGIONS)):
        labels, count = ndimage.label(grid >= threshold)
        member = labels[cell[:, 1], cell[:, 0]]  # 0: outside every region of this level
        sizes = np.bincount(member, minlength=count + 1)[1:]
        keep = [r + 1 for r in np.argsort(-sizes, kind="stable")[:most]
                if sizes[r] >= max(MIN_POINTS, MIN_SHARE * len(square))]
        found = []
        for r in keep:
            inside = member == r
            peak = np.unravel_index(np.argmax(np.where(labels == r, grid, -1)), grid.shape)
            shares = top1[inside].value_counts(normalize=True).head(2)
            found.append({"level": level, "x": -1 + 2 * (peak[1] + 0.5) / GRID, "y": -1 + 2 * (peak[0] + 0.5) / GRID,
                          "n": int(inside.sum()), "styles": [[s, round(float(v), 3)] for s, v in shares.items()],
                          "docs": prompts[inside].dropna().tolist()})
        words = distinctive_words([_common(r.pop("docs")) for r in found])
        out += [{**r, "words": w} for r, w in zip(found, words)]
    return out


def _common(prompts: list[str]) -> str:
    """A region's prompts as one document of the words that occur in MIN_WORD_DOCS of them or more."""
    words = [TOKEN.findall(prompt.lower()) for prompt in prompts]
    seen = Counter(word for tokens in words for word in set(tokens))
    return " ".join(word for tokens in words for word in tokens if seen[word] >= MIN_WORD_DOCS)


def named_regions(square: np.ndarray, top1: pd.Series, prompts: pd.Series) -> dict:
    """What the explorer's regions.json holds: the density grid (0-255, row-major, row = y), the levels and the
    labelled regions."""
    grid = density(square)
    return {"grid": GRID, "levels": list(LEVELS), "density": np.rint(grid * 255).astype(int).ravel().tolist(),
            "regions": regions(square, top1, prompts, grid)}

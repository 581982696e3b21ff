"""`stylemap predict PATH...`: name the art style of image files with the trained probe.

The model directory is self-describing: model_card.json says which embedding backend the probe
was trained on, and the encoder is built by the same `load_encoder` the pipeline uses, so the CLI
cannot embed differently from training. A file that cannot be read or decoded is reported on
stderr and skipped; the exit status is non-zero only when no file could be classified.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from stylemap.model.embedding import embed_images
from stylemap.model.encoders import build_encoder
from stylemap.model.probe import load_probe, predict_proba

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
CHUNK = 256  # files read into memory at once
BATCH_SIZE = 32  # images per encoder call


def collect(paths: list[str]) -> list[Path]:
    """Files as given (any suffix) plus image files found recursively in folders, in a stable order."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found += sorted(f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        else:
            found.append(path)  # a missing file is reported by classify
    return found


def load_model(model_dir: str | Path):
    """(encoder, W, b, classes, batch_size) from a train stage's output directory."""
    model_dir = Path(model_dir)
    card_path = model_dir / "model_card.json"
    if not card_path.exists():
        raise FileNotFoundError(f"{card_path} not found: is {model_dir} the train stage's output (data/model)?")
    emb = json.loads(card_path.read_text())["embedding"]
    weight, bias, classes = load_probe(model_dir)
    encoder = build_encoder(**emb)
    if encoder.dim != weight.shape[1]:
        raise ValueError(f"{model_dir}: encoder {encoder.name} gives {encoder.dim} dimensions, the probe expects {weight.shape[1]}")
    return encoder, weight, bias, classes, BATCH_SIZE


def classify(files: list[Path], model, top_k: int) -> list[dict]:
    """One result per file: {path, styles: [{style, prob}] (top_k, most probable first), error}."""
    encoder, weight, bias, classes, batch_size = model
    results = []
    for start in range(0, len(files), CHUNK):
        chunk = files[start:start + CHUNK]
        items, read_errors = [], []
        for f in chunk:
            try:
                items.append((f.read_bytes(), -1))
                read_errors.append("")
            except OSError as err:
                items.append((b"", -1))
                read_errors.append(f"unreadable: {err.strerror or err}")
        embeddings, errors = embed_images(encoder, items, batch_size=batch_size, workers=0)
        for f, vector, read_error, error in zip(chunk, embeddings, read_errors, errors):
            if vector is None:
                results.append({"path": str(f), "styles": [], "error": read_error or error})
                continue
            probs = predict_proba(vector[None, :], weight, bias)[0]
            top = np.argsort(-probs, kind="stable")[:top_k]
            results.append({"path": str(f), "error": "",
                            "styles": [{"style": classes[i], "prob": round(float(probs[i]), 4)} for i in top]})
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stylemap", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    cmd = commands.add_parser("predict", help="top-k art styles of image files or folders")
    cmd.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders (searched recursively)")
    cmd.add_argument("--top-k", type=int, default=3, help="styles to print per image (default 3)")
    cmd.add_argument("--model-dir", default="data/model", help="train stage output (default data/model)")
    cmd.add_argument("--json", metavar="OUT", help="also write the results as JSON to OUT")
    args = parser.parse_args(argv)
    if args.top_k < 1:
        parser.error("--top-k must be at least 1")

    files = collect(args.paths)
    if not files:
        print("stylemap: no image files found in " + " ".join(args.paths), file=sys.stderr)
        return 1
    try:
        model = load_model(args.model_dir)
    except (FileNotFoundError, ValueError) as err:
        print(f"stylemap: {err}", file=sys.stderr)
        return 2
    results = classify(files, model, args.top_k)
    for r in results:
        if r["error"]:
            print(f"{r['path']}: error: {r['error']}", file=sys.stderr)
        else:
            print(f"{r['path']}: " + ", ".join(f"{s['style']} {s['prob']:.3f}" for s in r["styles"]))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0 if any(not r["error"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())

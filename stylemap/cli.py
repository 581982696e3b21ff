"""`stylemap predict PATH...`: name the art style of image files with the trained probe; `stylemap serve`: open the
report and its interactive maps over localhost http (stylemap/report/serve.py).

The model directory is self-describing: model_card.json says which embedding backend the probe
was trained on, and the encoder is built by the same `load_encoder` the pipeline uses, so the CLI
cannot embed differently from training; probabilities are calibrated with evaluate's temperature
(calibration.json), as the pipeline's predict stage reports them. A file that cannot be read or decoded is reported on
stderr and skipped; the exit status is non-zero only when no file could be classified (1), or when the
model directory or an option is unusable (2, with one line saying why, before any work), or when the results
cannot be written (2, one line). Only regular files are opened (a named pipe would block), and none larger than
--max-bytes; a folder that cannot be listed is reported, not skipped silently. Paths are printed and written with
any bytes that are not UTF-8 escaped, so a file named in Latin-1 neither crashes the output nor loses the JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import stat
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from stylemap import runner
from stylemap.corpus.readers.local import IMAGE_SUFFIXES
from stylemap.model.embedding import EncoderSpec, embed_work
from stylemap.model.encoders import build_encoder
from stylemap.model.probe import load_probe, load_temperature, predict_proba
from stylemap.report import serve

CHUNK = 32  # files read into memory and encoded at once
MAX_BYTES = 64 * 2**20  # default --max-bytes


def collect(paths: list[str]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """(files as given, any suffix, plus image files found recursively in folders; (path, why) for what was
    skipped: folder files for their suffix, folders that cannot be listed), each in a stable order."""
    found: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            found.append(path)  # a missing or special file is reported by classify
            continue
        unlistable = []
        files = []
        for dirpath, _, filenames in os.walk(path, onerror=unlistable.append):
            files += [Path(dirpath) / name for name in filenames]
        skipped += [(Path(err.filename), f"cannot be listed: {err.strerror}") for err in unlistable]
        for f in sorted(files):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                found.append(f)
            else:
                skipped.append((f, f"suffix {f.suffix or '(none)'} is not an image suffix"))
    return found, sorted(skipped)


def shown(text: Path | str) -> str:
    """A path or message as text that any stdout can print and JSON can hold: a file name's bytes that are not
    UTF-8 (and any other lone surrogate) backslash-escaped."""
    text = os.fspath(text)
    try:
        return os.fsencode(text).decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate no file name decodes to
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def read_image_file(path: Path, max_bytes: int) -> bytes:
    """The bytes of a regular file no larger than max_bytes; OSError/ValueError naming the problem otherwise."""
    info = path.stat()
    if not stat.S_ISREG(info.st_mode):
        raise ValueError("not a regular file")
    if info.st_size > max_bytes:
        raise ValueError(f"too large: {info.st_size} bytes > --max-bytes {max_bytes}")
    try:
        return path.read_bytes()
    except MemoryError:
        raise ValueError(f"too large to hold in memory: {info.st_size} bytes") from None


def load_model(model_dir: str | Path):
    """(encoder, W, b, temperature, classes) from the train and evaluate stages' output directory."""
    model_dir = Path(model_dir)
    card_path = model_dir / "model_card.json"
    if not card_path.exists():
        raise FileNotFoundError(f"{card_path} not found: is {model_dir} the train stage's output (data/model)?")
    card = json.loads(card_path.read_text())
    if not isinstance(card, dict) or not isinstance(card.get("embedding"), dict):
        raise ValueError(f"{card_path} has no `embedding` entry: it was not written by the train stage")
    weight, bias, classes = load_probe(model_dir)
    temperature = load_temperature(model_dir)
    encoder = build_encoder(**card["embedding"])
    if encoder.dim != weight.shape[1]:
        raise ValueError(f"{model_dir}: encoder {encoder.name} gives {encoder.dim} dimensions, the probe expects {weight.shape[1]}")
    return encoder, weight, bias, temperature, classes


def classify(files: list[Path], model, top_k: int, max_bytes: int = MAX_BYTES) -> list[dict]:
    """One result per file: {path, styles: [{style, prob}] (top_k, most probable first), error}."""
    encoder, weight, bias, temperature, classes = model
    results = []
    for start in range(0, len(files), CHUNK):
        chunk = files[start:start + CHUNK]
        payloads, read_errors = [], []
        for f in chunk:
            try:
                payloads.append(read_image_file(f, max_bytes))
                read_errors.append("")
            except OSError as err:
                payloads.append(b"")
                read_errors.append(f"unreadable: {err.strerror or err}")
            except ValueError as err:
                payloads.append(b"")
                read_errors.append(f"refused: {err}")
        rows = pd.DataFrame({"image_id": [shown(f) for f in chunk], "image_bytes": payloads, "aug_seed": -1})
        embedded = runner.apply(embed_work(EncoderSpec(lambda: encoder, CHUNK, 0, 0), encoder.preprocess, None),
                                rows).to_pandas()  # the embed stage's own work
        for f, vector, read_error, error in zip(chunk, embedded["embedding"], read_errors, embedded["error"]):
            if read_error or error:
                results.append({"path": shown(f), "styles": [], "error": read_error or error})
                continue
            probs = predict_proba(vector[None, :], weight, bias, temperature)[0]
            top = np.argsort(-probs, kind="stable")[:top_k]
            results.append({"path": shown(f), "error": "",
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
    cmd.add_argument("--max-bytes", type=int, default=MAX_BYTES, help=f"largest file read (default {MAX_BYTES})")
    show = commands.add_parser("serve", help="the report and its interactive maps on localhost (Ctrl-C stops)")
    show.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free one)")
    show.add_argument("--project", default=".", help="the project folder (default: the current one)")
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve_report(Path(args.project), args.port)
    if args.top_k < 1:
        parser.error("--top-k must be at least 1")
    if args.json and (problem := json_target_problem(Path(args.json))):
        parser.error(f"--json {shown(args.json)}: {problem}")
    return predict(args)


def serve_report(project: Path, port: int) -> int:
    """Serve until Ctrl-C; 2 with one line when there is no report to serve or the port is taken."""
    try:
        httpd = serve.server(project, port)
    except OSError as err:  # no report (FileNotFoundError), or the port in use
        print(f"stylemap serve: {err}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C stops it even where SIGINT came in ignored
    print(f"stylemap: the report and its maps are at {serve.url(httpd)} (Ctrl-C stops)", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        print("stylemap: stopped")
    finally:
        httpd.server_close()
    return 0


def predict(args: argparse.Namespace) -> int:
    """`stylemap predict`: classify, print, and write --json; the exit status the module docstring gives."""
    files, skipped = collect(args.paths)
    for f, why in skipped:
        print(f"{shown(f)}: skipped: {why}", file=sys.stderr)
    if not files:
        print("stylemap: no image files found in " + " ".join(map(shown, args.paths)), file=sys.stderr)
        return 1
    try:
        model = load_model(args.model_dir)
    except Exception as err:  # noqa: BLE001 - any model-directory fault: one clear line, exit 2
        first_line = (str(err).splitlines() or [""])[0][:300]
        print(f"stylemap: model directory {args.model_dir}: {type(err).__name__}: {first_line}", file=sys.stderr)
        return 2
    results = classify(files, model, args.top_k, args.max_bytes)
    for r in results:
        if r["error"]:
            print(f"{r['path']}: error: {shown(r['error'])}", file=sys.stderr)
        else:
            print(f"{r['path']}: " + ", ".join(f"{s['style']} {s['prob']:.3f}" for s in r["styles"]))
    if args.json:
        try:
            Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        except OSError as err:
            print(f"stylemap: --json {shown(args.json)}: cannot be written: {err.strerror}", file=sys.stderr)
            return 2
    return 0 if any(not r["error"] for r in results) else 1


def json_target_problem(target: Path) -> str:
    """Why --json cannot be written, checked before any work ("" when it can): the results would be lost after it."""
    folder = target.resolve().parent
    if not folder.is_dir():
        return f"folder {target.parent} does not exist"
    if target.is_dir():
        return "is a folder"
    if not os.access(target if target.exists() else folder, os.W_OK):
        return "is not writable"
    return ""


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env bash
# All benchmarks, one after another (each prints its figures as ratios measured in its own run).
# Not tests: nothing here asserts a time. Expect ~15-25 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem/{print $2}') GiB"
echo "== embed (stage vs bare forward vs naive loop; RSS at N and 10N)"; $py bench/bench_embed.py
echo "== encoders on the Horde gold, preset by preset (top-1/top-3/macro-F1 with intervals; img/s)"; $py bench/bench_gold.py --blocks 5 --blocks 1,2,3,4,5,6
echo "== train from cached embeddings vs re-encoding every epoch"; $py bench/bench_train.py
echo "== pipeline (partial vs full dvc repro; sample RSS at N and 10N)"; $py bench/bench_pipeline.py
echo "== UMAP (10k vs 100k points)"; $py bench/bench_umap.py
echo "== explorer (1M points: data size, first render, frame time panning, thumbnails zoomed in)"; $py bench/bench_map.py
echo "== corpus formats (read throughput of the same images in each format, ÷ DiffusionDB)"; $py bench/bench_formats.py
echo "== Hub sampling (range reads vs whole parts: bytes, requests, disk, RSS)"; $py bench/bench_download.py
echo "== vLLM teacher (label / describe images/s)"; $py bench/bench_labels.py

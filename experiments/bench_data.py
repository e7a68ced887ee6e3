"""Benchmark the data pipeline: build the dog dataset cold, then load it from the cache.

  python -m experiments.bench_data                       # ../shared/data/mann_dog_bvh
  python -m experiments.bench_data --config.data.path=/path/to/MotionCapture

Prints both times and their ratio measured in the same run; the last line is JSON.
Target: the cold build of the 40 dog clips under 60 s on 2 cores.
"""

from __future__ import annotations

import json
import os
import tempfile
import time

from absl import app, logging
from ml_collections import config_flags

from mann_jax.data.dataset import build_dataset

_CONFIG = config_flags.DEFINE_config_file("config", "configs/dog.py", "Data config to benchmark.", lock_config=True)


def main(argv: list[str]) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)
    config = _CONFIG.value
    with tempfile.TemporaryDirectory() as cache:
        config.data.cache_dir = cache
        start = time.perf_counter()
        dataset = build_dataset(config.data, progress=True)
        cold = time.perf_counter() - start
        start = time.perf_counter()
        build_dataset(config.data, progress=False)
        cached = time.perf_counter() - start
    summary = dataset.summary()
    result = {
        "clips": summary["clips"],
        "frames": summary["frames"],
        "rows": summary["rows"],
        "cold_seconds": round(cold, 2),
        "cached_seconds": round(cached, 3),
        "cold_over_cached": round(cold / cached, 1),
        "cpu_count": os.cpu_count(),
        "target_cold_seconds": 60,
    }
    print(f"cold build   {cold:7.2f} s  ({summary['clips']} clips, {summary['frames']} frames, {summary['rows']} rows)")
    print(f"from cache   {cached:7.3f} s")
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)

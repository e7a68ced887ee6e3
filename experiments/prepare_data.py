"""Build the MANN dataset from a folder of BVH clips (or the embedded default) and summarise it.

  python -m experiments.prepare_data                                   # embedded default
  python -m experiments.prepare_data --config configs/dog.py --config.data.path=/path/to/bvh
  python -m experiments.prepare_data --config configs/dog.py --json out.json   # summary as JSON
  python -m experiments.prepare_data --config configs/dog.py --per_clip         # style rows of every clip
"""

from __future__ import annotations

import json
import time

from absl import flags, logging
from ml_collections import config_flags

from mann_jax import cli
from mann_jax.data.dataset import build_dataset

_CONFIG = config_flags.DEFINE_config_file("config", "configs/default.py", "Experiment config.", lock_config=True)
_NO_CACHE = flags.DEFINE_bool("no_cache", False, "Rebuild the dataset, ignoring (and not writing) the cache.")
_JSON = flags.DEFINE_string("json", None, "Also write the summary to this JSON file.")
_PER_CLIP = flags.DEFINE_bool("per_clip", False, "Also print the style rows of every clip.")


def main(argv: list[str]) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)
    config = _CONFIG.value
    start = time.perf_counter()
    dataset = build_dataset(config.data, use_cache=not _NO_CACHE.value)
    summary = dataset.summary()
    summary["seconds"] = round(time.perf_counter() - start, 2)
    summary["source"] = config.data.source
    print(f"source      {config.data.source} {config.data.path}")
    print(f"clips       {summary['clips']}  (train {summary['clips_per_split']['train']}, "
          f"val {summary['clips_per_split']['val']}, test {summary['clips_per_split']['test']})")
    print(f"frames      {summary['frames']}")
    print(f"rows        {summary['rows']}  ({summary['mirrored_rows']} mirrored)")
    print(f"dims        input {summary['input_dim']}, output {summary['output_dim']}")
    print("style rows  " + ", ".join(f"{k} {v}" for k, v in summary["style_rows"].items())
          + "  (original frames, not mirrored)")
    if _PER_CLIP.value:
        print(f"{'clip':24s} {'split':5s} " + " ".join(f"{s:>6s}" for s in summary["style_rows"]))
        for (name, counts), split in zip(summary["style_rows_per_clip"].items(), dataset.clip_splits):
            print(f"{name:24s} {split:5s} " + " ".join(f"{c:6d}" for c in counts.values()))
    for name, reason in summary["skipped"].items():
        print(f"skipped     {name}: {reason}")
    for name, fps in summary["resampled"].items():
        print(f"resampled   {name}: recorded at {fps:.4g} fps, resampled to 60 fps (slerp; positions linearly)")
    print(f"time        {summary['seconds']:.2f} s")
    if _JSON.value:
        with open(_JSON.value, "w") as f:
            json.dump(summary, f, indent=2)


if __name__ == "__main__":
    cli.run(main)

"""Exporter parity: the project's feature rows against the original exporter's, and the authors'
trained network on the project's rows of every clip.

  python -m experiments.parity
  python -m experiments.parity --config configs/dog.py --pretrained /path/to/MANN/trained

``--pretrained`` is an AI4Animation weights folder holding ``mocap-sample.txt`` (200 rows the
original exporter wrote for ``--sample_clip``). Prints the per-group table for those rows, then the
network's errors per clip (unmirrored and mirrored rows), and a JSON summary as the last line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from absl import flags, logging
from ml_collections import config_flags
from tqdm import tqdm

from mann_jax import cli
from mann_jax.data import layout
from mann_jax.data.bvh import load_bvh
from mann_jax.data.dataset import clip_rows
from mann_jax.data.errors import MotionDataError
from mann_jax.evaluate import exporter_parity as parity
from mann_jax.export.ai4animation import model_from_ai4animation

_CONFIG = config_flags.DEFINE_config_file("config", "configs/dog.py", "Data config (BVH clips).", lock_config=True)
_PRETRAINED = flags.DEFINE_string(
    "pretrained", os.environ.get("MANN_PRETRAINED", os.path.join("..", "shared", "data", "mann_pretrained")),
    "AI4Animation weights folder with mocap-sample.txt.")
_LOCOMOTION = [layout.STYLES.index("Idle"), layout.STYLES.index("Move")]
_SAMPLE_CLIP = flags.DEFINE_string("sample_clip", "D1_001_KAN01_001", "The clip mocap-sample.txt was exported from.")
_MAX_Z = flags.DEFINE_float("max_z", 10.0, "Rows 'inside the authors' export': every bone column within this many of "
                            "the authors' Xstd from Xmean (at most 1/max_z^2 of their rows lie beyond, per column).")


def _row_table(groups: dict[str, parity.GroupComparison]) -> str:
    lines = [f"{'group':24s} {'mean |diff|':>12s} {'orig mean |v|':>14s} {'corr':>8s}"]
    lines += [f"{name:24s} {g.mean_abs_diff:12.6f} {g.reference_mean_abs:14.6f} {g.correlation:8.4f}"
              for name, g in groups.items()]
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)
    data = _CONFIG.value.data
    folder, pretrained = Path(data.path), Path(_PRETRAINED.value)
    clips = sorted(folder.glob("*.bvh")) if folder.is_dir() else []
    if not clips:
        raise MotionDataError(folder, "no *.bvh clips here (set --config.data.path)")
    sample_file = pretrained / "mocap-sample.txt"
    if not sample_file.is_file():
        raise MotionDataError(sample_file, "missing (the exporter's sample rows)")
    sample = np.loadtxt(sample_file, dtype=np.float64, ndmin=2)
    model, norm = model_from_ai4animation(pretrained)

    summary: dict = {"clips": {}, "max_z": _MAX_Z.value}
    style_sums, n_rows = np.zeros(layout.NUM_STYLES), 0
    for path in tqdm(clips, desc="clips", unit="clip"):
        rows = clip_rows(load_bvh(path), data, source=path)
        for mirrored in (False, True):
            keep = rows.mirrored == mirrored
            if not keep.any():
                continue
            if path.stem == _SAMPLE_CLIP.value and not mirrored:
                offset, groups = parity.sample_parity(sample, rows.inputs[keep])
                summary["sample"] = {"clip": path.stem, "first_frame": int(rows.frames[keep][offset]),
                                     "groups": {k: g._asdict() for k, g in groups.items()}}
            predictions = parity.predict(model, norm, rows.inputs[keep])
            errors = parity.network_errors(predictions, rows.outputs[keep], norm.y_std)
            entry = summary["clips"].setdefault(path.stem, {})
            entry["mirrored" if mirrored else "original"] = errors._asdict()
            style_sums, n_rows = style_sums + parity.style_mix(rows.inputs[keep]) * keep.sum(), n_rows + keep.sum()
            inside = parity.within_export_distribution(rows.inputs[keep], norm, max_z=_MAX_Z.value)
            if inside.any():
                entry["inside_" + ("mirrored" if mirrored else "original")] = {
                    **parity.network_errors(predictions[inside], rows.outputs[keep][inside], norm.y_std)._asdict(),
                    "fraction_of_rows": float(inside.mean())}
            # Idle/Move rows: the derived labels are surest there; sit/lie/jump depend on the authors'
            # hand-made labels and exported ranges, which are not public.
            moving = np.isin(rows.styles[keep], _LOCOMOTION)
            if moving.any():
                entry["locomotion_" + ("mirrored" if mirrored else "original")] = parity.network_errors(
                    predictions[moving], rows.outputs[keep][moving], norm.y_std)._asdict()

    if "sample" in summary:
        s = summary["sample"]
        print(f"mocap-sample.txt vs the project's rows of {s['clip']} (centre frames {s['first_frame']}.."
              f"{s['first_frame'] + len(sample) - 1}):")
        print(_row_table({k: parity.GroupComparison(**g) for k, g in s["groups"].items()}))
    else:
        print(f"(sample clip {_SAMPLE_CLIP.value} not among the clips: no row comparison)")
    print("\nthe authors' network on the project's rows (bone positions: mean |error| m; others: MSE / Ystd^2)")
    groups = list(parity.OUTPUT_GROUPS)
    print(f"{'clip':24s} {'half':9s} {'bones m':>8s} " + " ".join(f"{g[:14]:>14s}" for g in groups) + f" {'mean':>7s}")
    for clip, halves in summary["clips"].items():
        for half, e in halves.items():
            if half not in ("original", "mirrored"):
                continue
            print(f"{clip:24s} {half:9s} {e['bone_position_m']:8.4f} "
                  + " ".join(f"{e['std_units'][g]:14.3f}" for g in groups) + f" {e['mean_std_units']:7.3f}")
    print(f"\n(locomotion: Idle/Move rows; inside: every bone column within {_MAX_Z.value:g} Xstd of Xmean)")
    for half in ("original", "mirrored", "locomotion_original", "locomotion_mirrored", "inside_original",
                 "inside_mirrored"):
        es = [h[half] for h in summary["clips"].values() if half in h]
        if es:
            bones = [e["bone_position_m"] for e in es]
            summary[f"mean_{half}"] = {"bone_position_m": float(np.mean(bones)),
                                       "median_bone_position_m": float(np.median(bones)),
                                       "mean_std_units": float(np.mean([e["mean_std_units"] for e in es]))}
            print(f"mean over {len(es)} clips ({half}): bones {summary[f'mean_{half}']['bone_position_m']:.4f} m "
                  f"(median {summary[f'mean_{half}']['median_bone_position_m']:.4f}), "
                  f"{summary[f'mean_{half}']['mean_std_units']:.3f} std units")
    # The authors' Xmean style columns are their rows' style mix; ours differ where they chose ranges.
    ours, theirs = style_sums / max(n_rows, 1), parity.style_mix(np.asarray(norm.x_mean)[None])
    summary["style_mix"] = {"project": dict(zip(layout.STYLES, ours.tolist())),
                            "authors": dict(zip(layout.STYLES, theirs.tolist()))}
    print("\nstyle mix of the rows   " + " ".join(f"{s:>6s}" for s in layout.STYLES))
    print("  the project's rows    " + " ".join(f"{v:6.3f}" for v in ours))
    print("  the authors' (Xmean)  " + " ".join(f"{v:6.3f}" for v in theirs))
    print(json.dumps(summary))


if __name__ == "__main__":
    cli.run(main)

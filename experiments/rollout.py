"""Roll trained MANN(s) out under a scripted scenario (or a replayed clip); write video, metrics and plots.

  python -m experiments.rollout --config configs/dog.py --checkpoint runs/dog --scenario turn180 --out out/turn180
  python -m experiments.rollout --config configs/dog.py --checkpoint runs/dense,runs/sparse90 \\
      --labels dense,sparse90 --scenario walk --param speed=1.2 --param seconds=8 --out out/walk
  python -m experiments.rollout --config configs/dog.py --checkpoint runs/dog \\
      --scenario replay:D1_007_KAN01_001 --out out/replay
  python -m experiments.rollout --config configs/dog.py --checkpoint ../shared/data/mann_pretrained \\
      --scenario turn180 --out out/pretrained

Several checkpoints (same model config) are rolled out in ONE vmapped call and drawn side by side.
Scenarios: walk, turn90, turn180, run, trot_stop, sit, lie, jump (mann_jax.control.scenarios), or
``replay:<clip>`` (the clip's trajectory and styles drive the character; the mocap is drawn beside).

Writes into --out: rollout.gif, rollout.mp4 (chase camera; paws green = contact, red = skating),
strip.png (stills), paws.png (paw heights and speeds over time), metrics.json (foot skating in
cm/frame and cm/s, bone-length drift, jitter, speed tracking, frozen-while-turning, and the
ground-truth skating of the real flat-floor clips when the data are BVH).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from absl import flags, logging
from ml_collections import config_flags

from mann_jax import cli
from mann_jax.control import render
from mann_jax.control.rollout import (
    initial_state_from_input,
    load_params,
    replay_errors,
    replay_from_dataset,
    rollout,
    stack_params,
    start_row,
)
from mann_jax.control.scenarios import make_scenario
from mann_jax.data.dataset import build_dataset
from mann_jax.evaluate import ground_truth_skating
from mann_jax.evaluate.controller import motion_metrics
from mann_jax.export.ai4animation import is_weights_folder, model_from_ai4animation
from mann_jax.train import ModelFunctions, build_model

_CONFIG = config_flags.DEFINE_config_file("config", "configs/default.py", "Experiment config.", lock_config=True)
_CHECKPOINT = flags.DEFINE_list("checkpoint", None, "Run workdir(s) (or checkpoint folders), comma separated, "
                                "or one AI4Animation weights folder.",
                                required=True)
_LABELS = flags.DEFINE_list("labels", None, "A name per checkpoint (default: the folder names).")
_SCENARIO = flags.DEFINE_string("scenario", "walk", "Scenario name, or replay:<clip>.")
_PARAM = flags.DEFINE_multi_string("param", [], "Scenario parameter override, key=value (e.g. speed=1.5).")
_START_STYLE = flags.DEFINE_string("start_style", "Idle", "Style of the dataset row the character starts from.")
_OUT = flags.DEFINE_string("out", None, "Output folder.", required=True)
_FPS = flags.DEFINE_float("fps", 60.0, "Frame rate of the training data.")
_STRIDE = flags.DEFINE_integer("stride", 2, "Video: draw every n-th frame (plays in real time).")
_NO_VIDEO = flags.DEFINE_bool("no_video", False, "Skip the GIF/MP4 (metrics, plot and strip only).")
_FLOOR = flags.DEFINE_enum("floor", "floor", ["floor", "support"],
                           "Skating height above y = 0 (the study) or above the per-clip support estimate.")
_GROUND_TRUTH = flags.DEFINE_bool("ground_truth", True, "Also measure the real flat-floor clips' skating (BVH data).")


def _parse_params(items: list[str]) -> dict[str, float]:
    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--param expects key=value, got {item!r}")
        try:
            params[key.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--param {key}: {value!r} is not a number") from None
    return params


def main(argv: list[str]) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)
    try:
        run()
    except ValueError as e:  # bad scenario, parameter, style or shapes: the user's to fix
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def run() -> None:
    config, fps = _CONFIG.value, float(_FPS.value)
    out = Path(_OUT.value)
    out.mkdir(parents=True, exist_ok=True)
    checkpoints = list(_CHECKPOINT.value)
    labels = list(_LABELS.value) if _LABELS.value else [Path(c.rstrip("/")).name for c in checkpoints]
    if len(labels) != len(checkpoints):
        raise ValueError(f"{len(checkpoints)} checkpoints but {len(labels)} labels")
    start = time.perf_counter()
    dataset = build_dataset(config.data, progress=False)
    fns, params, normalisation = _models(config, checkpoints, dataset)
    initial, control, commanded, replay, scenario_info = _scenario(dataset, fps)
    many = len(params) > 1
    result = rollout(fns, stack_params(params) if many else params[0], normalisation, initial, control, fps=fps,
                     models_axis=many)
    seconds_rollout = time.perf_counter() - start
    # One (frames, ...) track per model, whether or not the rollout had a models axis.
    n = len(params)
    result = result._replace(bones=np.asarray(result.bones).reshape((n,) + np.shape(result.bones)[-3:]),
                             root_positions=np.asarray(result.root_positions).reshape(n, -1, 3),
                             root_directions=np.asarray(result.root_directions).reshape(n, -1, 3),
                             target_velocity=np.asarray(result.target_velocity).reshape(n, -1, 3))
    models = [_model_metrics(result, i, label, ckpt, commanded, replay, fps=fps)
              for i, (label, ckpt) in enumerate(zip(labels, checkpoints))]
    metrics: dict[str, Any] = {"scenario": scenario_info, "fps": fps, "skating_floor": _FLOOR.value, "models": models}
    if replay is not None:
        metrics["mocap"] = motion_metrics(replay.reference_bones, replay.reference_root_positions,
                                          replay.reference_root_directions, None, fps=fps, floor=_FLOOR.value)
    if _GROUND_TRUTH.value and config.data.source == "bvh":
        metrics["ground_truth_skating"] = _ground_truth(config.data.path)
    metrics["files"] = _draw(result, labels, replay, out, metrics, fps=fps)
    metrics["seconds"] = {"load_and_rollout": round(seconds_rollout, 2), "total": round(time.perf_counter() - start, 2)}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    _print_summary(metrics, out)


def _models(config: Any, checkpoints: list[str], dataset: Any) -> tuple[ModelFunctions, list[Any], Any]:
    """The model functions, each checkpoint's parameters and the normalisation to run them with."""
    if any(is_weights_folder(c) for c in checkpoints):
        # An AI4Animation weights folder (e.g. the authors' trained dog) carries its own network size
        # and normalisation, so it is rolled out alone.
        if len(checkpoints) > 1:
            raise ValueError("an AI4Animation weights folder is rolled out alone (its normalisation is its own)")
        model, normalisation = model_from_ai4animation(checkpoints[0])
        fns = ModelFunctions.of(model)
        return fns, [fns.params], normalisation
    fns = ModelFunctions.of(build_model(config.model, seed=int(config.train.seed)))
    return fns, [load_params(c, fns) for c in checkpoints], dataset.normalisation


def _scenario(dataset: Any, fps: float) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
    """The initial state, the control, the commanded speed (None for a replay), the replay (or None), its info."""
    if _SCENARIO.value.startswith("replay:"):
        if _PARAM.value:
            raise ValueError("--param does not apply to replay scenarios")
        replay = replay_from_dataset(dataset, _SCENARIO.value.split(":", 1)[1], fps=fps)
        return replay.initial, replay.control, None, replay, {"name": _SCENARIO.value, "frames": len(replay.frames)}
    scenario = make_scenario(_SCENARIO.value, fps=fps, **_parse_params(_PARAM.value))
    row = start_row(dataset, style=_START_STYLE.value)
    info = {"name": scenario.name, "params": scenario.params, "events": scenario.events,
            "frames": scenario.num_frames, "start_row": row,
            "start_clip": dataset.clip_names[int(dataset.clip_index[row])],
            "start_frame": int(dataset.frames[row]), "start_style": _START_STYLE.value}
    return initial_state_from_input(dataset.inputs[row]), scenario.control, scenario.commanded_speed, None, info


def _model_metrics(result: Any, i: int, label: str, checkpoint: str, commanded: Any, replay: Any, *,
                   fps: float) -> dict[str, Any]:
    """Model ``i``'s motion metrics, and its errors against the clip when replaying one."""
    m: dict[str, Any] = {"label": label, "checkpoint": str(checkpoint)}
    one = result._replace(bones=result.bones[i], root_positions=result.root_positions[i],
                          root_directions=result.root_directions[i])
    m.update(motion_metrics(one.bones, one.root_positions, one.root_directions, commanded, fps=fps,
                            floor=_FLOOR.value))
    if replay is not None:
        err = replay_errors(one, replay)
        m["replay"] = {"bone_error_world_m": float(err.world.mean()), "bone_error_local_m": float(err.local.mean()),
                       "root_drift_final_m": float(err.root[-1]), "heading_error_final_deg": float(err.heading[-1])}
    return m


def _ground_truth(path: str) -> dict[str, Any]:
    """The real flat-floor clips' foot skating, per clip and on average."""
    gt = ground_truth_skating(path, floor=_FLOOR.value)
    return {"clips": len(gt.per_clip), "clip_mean_cm_per_frame": gt.clip_mean_cm_per_frame,
            "frame_mean_cm_per_frame": gt.frame_mean_cm_per_frame, "floor": gt.floor,
            "per_clip_cm_per_frame": {k: float(v.cm_per_frame) for k, v in gt.per_clip.items()}}


def _draw(result: Any, labels: list[str], replay: Any, out: Path, metrics: dict[str, Any], *,
          fps: float) -> list[str]:
    """Write the paw plot, the stills and (unless --no_video) the videos; the files written, metrics.json first."""
    tracks = [render.Track(bones=result.bones[i], root_positions=result.root_positions[i],
                           root_directions=result.root_directions[i], title=label,
                           target_velocity=result.target_velocity[i]) for i, label in enumerate(labels)]
    if replay is not None:
        tracks.append(render.Track(bones=replay.reference_bones, root_positions=replay.reference_root_positions,
                                   root_directions=replay.reference_root_directions, title="mocap"))
    render.plot_paws(tracks, out / "paws.png", fps=fps)
    render.render_strip(tracks, out / "strip.png", fps=fps)
    files = ["metrics.json", "paws.png", "strip.png"]
    if not _NO_VIDEO.value:
        frames = render.render_frames(tracks, fps=fps, stride=_STRIDE.value)
        files += render.write_videos(frames, out, "rollout", fps=fps / _STRIDE.value)
        metrics["video_frames"] = int(len(frames))
    return files


def _print_summary(metrics: dict[str, Any], out: Path) -> None:
    """One line per model, the mocap's skating when measured, and where the files went."""
    for m in metrics["models"]:
        print(f"{m['label']}: skating {m['skating_cm_per_frame']:.4f} cm/frame "
              f"({m['skating_cm_per_second']:.2f} cm/s), "
              f"hips {m['hips_height_median_m']:.2f} m, final heading {m['final_heading_deg']:.1f} deg")
    if "ground_truth_skating" in metrics:
        g = metrics["ground_truth_skating"]
        print(f"mocap ({g['clips']} flat-floor clips): {g['clip_mean_cm_per_frame']:.4f} cm/frame (mean over clips)")
    print(f"wrote {', '.join(metrics['files'])} to {out}{os.sep}")


if __name__ == "__main__":
    cli.run(main)

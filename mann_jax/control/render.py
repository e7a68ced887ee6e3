"""Render rollouts: an animated skeleton seen from a chase camera, paw contacts and skating marked.

* **Camera.** A pinhole camera that follows the character: it looks at the (smoothed) root from
  ``distance`` metres away, ``height`` metres up, at ``azimuth_deg`` around the smoothed facing
  (0 = straight behind, 90 = from the character's left side). Smoothing (a Gaussian of
  ``smooth_seconds`` over the root path and facing) keeps the view from shaking with the gait.
  Several tracks (models, scenarios) are drawn side by side, each with its own camera.
* **Paws.** Each paw site is a dot: green when in contact (below ``H`` = 2.5 cm and slower than
  0.4 m/s horizontally), red when skating (below ``H`` and skating more than
  ``skate_highlight`` cm/frame by the study's formula, :mod:`mann_jax.evaluate.skating`), grey in
  the air. A 4 m x 4 m floor grid (0.5 m), the root's past path and the commanded velocity (an
  arrow, when known) are drawn on the floor.
* **Outputs.** :func:`render_frames` returns ``(N, H, W, 3)`` uint8 frames; :func:`write_gif` and
  :func:`write_mp4` save them with imageio (its ffmpeg binary ships with ``imageio-ffmpeg``;
  :func:`write_videos` writes both and skips the MP4 when that package is missing);
  :func:`render_strip` saves a still film strip (rows = tracks, columns = moments);
  :func:`plot_paws` plots paw heights and horizontal speeds over time.

Matplotlib (Agg) draws 2-D projections it is given, so a frame costs a few milliseconds.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy.ndimage import gaussian_filter1d  # noqa: E402

from mann_jax.data import layout  # noqa: E402
from mann_jax.evaluate.motion import DOG_PARENTS  # noqa: E402
from mann_jax.evaluate.skating import SKATING_HEIGHT, skating_per_frame  # noqa: E402

PAW_COLOURS = {"contact": "#2ca02c", "skating": "#d62728", "air": "#7f7f7f"}


@dataclasses.dataclass(frozen=True)
class Track:
    """One character to draw (world space, metres).

    Attributes:
      bones: ``(T, 27, 3)`` positions.
      root_positions: ``(T, 3)``; root_directions: ``(T, 3)`` unit facings.
      title: panel title.
      target_velocity: optional ``(T, 3)`` commanded velocity (drawn as an arrow).
    """

    bones: np.ndarray
    root_positions: np.ndarray
    root_directions: np.ndarray
    title: str = ""
    target_velocity: np.ndarray | None = None

    @property
    def num_frames(self) -> int:
        return len(self.bones)


def tracks_from_rollout(result: Any, titles: Sequence[str]) -> list[Track]:
    """One :class:`Track` per leading index of a :class:`~mann_jax.control.rollout.Rollout`
    whose leading axes (models and/or characters) are flattened in order."""
    bones = np.asarray(result.bones)
    lead = bones.shape[:-3]
    n = int(np.prod(lead)) if lead else 1
    flat = lambda a: np.asarray(a).reshape((n,) + np.shape(a)[len(lead):])  # noqa: E731
    b, p, d, v = flat(result.bones), flat(result.root_positions), flat(result.root_directions), \
        flat(result.target_velocity)
    if len(titles) != n:
        raise ValueError(f"{n} tracks in the rollout but {len(titles)} titles")
    return [Track(bones=b[i], root_positions=p[i], root_directions=d[i], title=titles[i], target_velocity=v[i])
            for i in range(n)]


@dataclasses.dataclass(frozen=True)
class ChaseCamera:
    """Where the camera sits relative to the smoothed root (see the module docstring)."""

    distance: float = 2.4
    height: float = 0.9
    azimuth_deg: float = 70.0
    look_height: float = 0.3
    focal: float = 2.4
    smooth_seconds: float = 0.5


def paw_states(bones: np.ndarray, *, fps: float, skate_highlight: float = 0.1,
               contact_speed: float = 0.4) -> np.ndarray:
    """``(T, 4)`` per paw and frame: 0 air, 1 contact, 2 skating (see the module docstring)."""
    paws = bones[:, list(layout.PAW_INDICES)]
    skate = skating_per_frame(paws) * 100.0  # cm/frame, (T - 1, 4)
    skate = np.concatenate([skate[:1], skate]) if len(skate) else np.zeros((len(paws), 4))
    step = np.diff(paws, axis=0, prepend=paws[:1])
    speed = np.hypot(step[..., 0], step[..., 2]) * fps
    low = paws[..., 1] < SKATING_HEIGHT
    state = np.where(low & (speed < contact_speed), 1, 0)
    return np.where(low & (skate > skate_highlight), 2, state)


def _camera_path(track: Track, camera: ChaseCamera, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """``(T, 3)`` camera positions and ``(T, 3, 3)`` rows = right, up, forward."""
    sigma = camera.smooth_seconds * fps
    root = track.root_positions.astype(np.float64)
    facing = track.root_directions.astype(np.float64)
    if sigma > 0 and len(root) > 1:
        root = gaussian_filter1d(root, sigma, axis=0, mode="nearest")
        facing = gaussian_filter1d(facing, sigma, axis=0, mode="nearest")
    facing[:, 1] = 0.0
    facing /= np.maximum(np.linalg.norm(facing, axis=-1, keepdims=True), 1e-9)
    a = np.radians(camera.azimuth_deg)
    left = np.stack([facing[:, 2], np.zeros(len(facing)), -facing[:, 0]], axis=-1)
    offset = -np.cos(a) * facing + np.sin(a) * left
    target = root + np.array([0.0, camera.look_height, 0.0])
    eye = root + camera.distance * offset + np.array([0.0, camera.height, 0.0])
    fwd = target - eye
    fwd /= np.linalg.norm(fwd, axis=-1, keepdims=True)
    right = np.cross(fwd, np.array([0.0, 1.0, 0.0]))
    right /= np.maximum(np.linalg.norm(right, axis=-1, keepdims=True), 1e-9)
    up = np.cross(right, fwd)
    return eye, np.stack([right, up, fwd], axis=1)


def _project(points: np.ndarray, eye: np.ndarray, axes: np.ndarray, focal: float) -> np.ndarray:
    """``(..., 2)`` screen coordinates of world points ``(..., 3)`` (NaN behind the camera)."""
    rel = np.einsum("ij,...j->...i", axes, points - eye)
    z = rel[..., 2:3]
    screen = focal * rel[..., :2] / np.where(z > 0.05, z, np.nan)
    return screen


def _grid(centre: np.ndarray, half: float = 2.0, step: float = 0.5, samples: int = 24) -> list[np.ndarray]:
    """Floor grid lines around ``centre`` snapped to the world grid, each as ``(samples, 3)`` points."""
    cx, cz = np.round(centre[0] / step) * step, np.round(centre[2] / step) * step
    ticks = np.arange(-half, half + 1e-9, step)
    s = np.linspace(-half, half, samples)
    lines = []
    for t in ticks:
        lines.append(np.stack([np.full(samples, cx + t), np.zeros(samples), cz + s], axis=-1))
        lines.append(np.stack([cx + s, np.zeros(samples), np.full(samples, cz + t)], axis=-1))
    return lines


class _Panel:
    """The matplotlib artists of one track."""

    def __init__(self, ax: Any, track: Track, camera: ChaseCamera, fps: float, skate_highlight: float) -> None:
        self.ax, self.track, self.camera, self.fps = ax, track, camera, fps
        self.eye, self.axes = _camera_path(track, camera, fps)
        self.states = paw_states(track.bones, fps=fps, skate_highlight=skate_highlight)
        ax.set_xlim(-1.0, 1.0)
        ax.set_ylim(-0.75, 0.75)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_facecolor("#f4f1ea")
        ax.set_title(track.title, fontsize=9)
        n_grid = len(_grid(np.zeros(3)))
        self.grid = [ax.plot([], [], color="#cfc8b8", lw=0.6, zorder=1)[0] for _ in range(n_grid)]
        self.trail = ax.plot([], [], color="#1f77b4", lw=1.0, alpha=0.6, zorder=2)[0]
        self.arrow = ax.plot([], [], color="#ff7f0e", lw=2.0, zorder=2)[0]
        self.bones = [ax.plot([], [], color="#333333", lw=1.6, solid_capstyle="round", zorder=3)[0]
                      for p in DOG_PARENTS if p >= 0]
        self.paws = ax.scatter(np.zeros(4), np.zeros(4), s=28, zorder=4)
        self.label = ax.text(0.02, 0.03, "", transform=ax.transAxes, fontsize=7, color="#333333")

    def draw(self, t: int) -> None:
        tr, eye, axes, f = self.track, self.eye[t], self.axes[t], self.camera.focal
        for line, pts in zip(self.grid, _grid(tr.root_positions[t])):
            xy = _project(pts, eye, axes, f)
            line.set_data(xy[:, 0], xy[:, 1])
        past = tr.root_positions[max(0, t - 240): t + 1]
        xy = _project(past, eye, axes, f)
        self.trail.set_data(xy[:, 0], xy[:, 1])
        if tr.target_velocity is not None:
            a = tr.root_positions[t]
            xy = _project(np.stack([a, a + 0.5 * tr.target_velocity[t]]), eye, axes, f)
            self.arrow.set_data(xy[:, 0], xy[:, 1])
        pts = _project(tr.bones[t], eye, axes, f)
        k = 0
        for j, p in enumerate(DOG_PARENTS):
            if p >= 0:
                self.bones[k].set_data([pts[p, 0], pts[j, 0]], [pts[p, 1], pts[j, 1]])
                k += 1
        paws = pts[list(layout.PAW_INDICES)]
        self.paws.set_offsets(np.nan_to_num(paws, nan=10.0))
        names = {0: "air", 1: "contact", 2: "skating"}
        self.paws.set_color([PAW_COLOURS[names[int(s)]] for s in self.states[t]])
        self.label.set_text(f"t = {t / self.fps:5.2f} s")


def _figure(n_panels: int, width: int, height: int, dpi: int = 100) -> tuple[Any, list[Any]]:
    fig, axes = plt.subplots(1, n_panels, figsize=(width * n_panels / dpi, height / dpi), dpi=dpi, squeeze=False)
    fig.subplots_adjust(left=0.005, right=0.995, bottom=0.01, top=0.92, wspace=0.02)
    return fig, list(axes[0])


def _canvas_rgb(fig: Any) -> np.ndarray:
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def render_frames(
    tracks: Sequence[Track],
    *,
    fps: float,
    stride: int = 2,
    width: int = 400,
    height: int = 288,
    camera: ChaseCamera = ChaseCamera(),
    skate_highlight: float = 0.1,
) -> np.ndarray:
    """Frames of the tracks side by side, every ``stride``-th rollout frame.

    Args:
      tracks: the characters (same length).
      fps: frame rate of the rollout.
      stride: draw every ``stride``-th frame (the video plays at ``fps / stride``, in real time).
      width, height: pixels per panel (multiples of 16 avoid the MP4 writer's resizing).
      camera: the chase camera.
      skate_highlight: cm/frame above which a low paw is drawn as skating.

    Returns:
      ``(ceil(T / stride), height, width · len(tracks), 3)`` uint8.
    """
    if not tracks:
        raise ValueError("no tracks to render")
    lengths = {t.num_frames for t in tracks}
    if len(lengths) != 1:
        raise ValueError(f"tracks must have the same number of frames, got {sorted(lengths)}")
    fig, axes = _figure(len(tracks), width, height)
    try:
        panels = [_Panel(ax, tr, camera, fps, skate_highlight) for ax, tr in zip(axes, tracks)]
        frames = []
        for t in range(0, tracks[0].num_frames, stride):
            for p in panels:
                p.draw(t)
            frames.append(_canvas_rgb(fig))
    finally:
        plt.close(fig)
    return np.stack(frames)


def write_gif(frames: np.ndarray, path: str | os.PathLike, *, fps: float) -> None:
    """Save frames as a looping GIF (``fps`` frames per second)."""
    import imageio.v3 as iio

    iio.imwrite(Path(path), frames, extension=".gif", duration=1000.0 / fps, loop=0)


def mp4_writer_available() -> bool:
    """Whether :func:`write_mp4` can run: imageio's MP4 writer needs the ``imageio-ffmpeg`` package."""
    return importlib.util.find_spec("imageio_ffmpeg") is not None


def write_mp4(frames: np.ndarray, path: str | os.PathLike, *, fps: float) -> None:
    """Save frames as an H.264 MP4 (dimensions padded to a multiple of 16 by the writer).

    Raises:
        RuntimeError: ``imageio-ffmpeg`` is not installed (without it imageio would pick another
            plugin for the ``.mp4`` name and fail with an unrelated message).
    """
    if not mp4_writer_available():
        raise RuntimeError(f"cannot write {path}: MP4 needs the imageio-ffmpeg package "
                           "(a dependency of mann_jax; pip install imageio-ffmpeg)")
    import imageio.v3 as iio

    iio.imwrite(Path(path), frames, extension=".mp4", fps=fps, codec="libx264", macro_block_size=16)


def write_videos(frames: np.ndarray, directory: str | os.PathLike, stem: str, *, fps: float) -> list[str]:
    """``<stem>.gif`` and, when :func:`mp4_writer_available`, ``<stem>.mp4`` in ``directory``.

    A missing MP4 writer skips the MP4 with a note on stderr instead of failing the experiment
    that rendered the frames. Returns the names of the files written.
    """
    directory = Path(directory)
    write_gif(frames, directory / f"{stem}.gif", fps=fps)
    written = [f"{stem}.gif"]
    if mp4_writer_available():
        write_mp4(frames, directory / f"{stem}.mp4", fps=fps)
        written.append(f"{stem}.mp4")
    else:
        print(f"skipped {directory / stem}.mp4: MP4 needs the imageio-ffmpeg package (the GIF is written)",
              file=sys.stderr)
    return written


def render_strip(
    tracks: Sequence[Track],
    path: str | os.PathLike,
    *,
    fps: float,
    columns: int = 6,
    width: int = 260,
    height: int = 200,
    camera: ChaseCamera = ChaseCamera(),
) -> list[int]:
    """A still PNG: one row per track, ``columns`` evenly spaced moments. Returns the frames shown."""
    if not tracks:
        raise ValueError("no tracks to render")
    n = tracks[0].num_frames
    moments = np.linspace(0, n - 1, columns).round().astype(int).tolist()
    rows = []
    for tr in tracks:
        fig, axes = _figure(columns, width, height)
        try:
            panels = [_Panel(ax, dataclasses.replace(tr, title=f"{tr.title}  {t / fps:.1f} s"), camera, fps, 0.1)
                      for ax, t in zip(axes, moments)]
            for p, t in zip(panels, moments):
                p.draw(t)
            rows.append(_canvas_rgb(fig))
        finally:
            plt.close(fig)
    import imageio.v3 as iio

    iio.imwrite(Path(path), np.concatenate(rows, axis=0), extension=".png")
    return moments


def plot_paws(tracks: Sequence[Track], path: str | os.PathLike, *, fps: float) -> None:
    """Paw heights (cm) and horizontal speeds (m/s) over time, one column per track."""
    fig, axes = plt.subplots(2, len(tracks), figsize=(5.5 * len(tracks), 5.5), squeeze=False, sharex=True)
    try:
        names = ("front left", "front right", "hind left", "hind right")
        for c, tr in enumerate(tracks):
            paws = tr.bones[:, list(layout.PAW_INDICES)]
            time = np.arange(len(paws)) / fps
            step = np.diff(paws, axis=0, prepend=paws[:1])
            speed = np.hypot(step[..., 0], step[..., 2]) * fps
            for k in range(4):
                axes[0, c].plot(time, paws[:, k, 1] * 100, lw=0.9, label=names[k])
                axes[1, c].plot(time, speed[:, k], lw=0.9, label=names[k])
            axes[0, c].axhline(SKATING_HEIGHT * 100, color="k", ls="--", lw=0.7, label="H = 2.5 cm")
            axes[0, c].axhline(0.0, color="k", lw=0.5)
            axes[0, c].set_title(tr.title, fontsize=9)
            axes[0, c].set_ylabel("paw height (cm)")
            axes[1, c].set_ylabel("horizontal paw speed (m/s)")
            axes[1, c].set_xlabel("time (s)")
        axes[0, 0].legend(fontsize=7, loc="upper right")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)

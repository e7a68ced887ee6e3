"""Reading and writing BVH motion capture files.

Conventions (shared with :mod:`mann_jax.data.skeleton`):

* Points are listed in BVH depth-first order, End Sites included; an End Site is named
  ``<parent name>Site`` (``Head`` -> ``HeadSite``) and has the identity rotation.
* Rotation channels may come in any order; the local rotation is the product of the elementary
  rotations in the listed order, e.g. ``Zrotation Xrotation Yrotation`` gives ``R = Rz @ Rx @ Ry``
  (scipy's intrinsic ``Rotation.from_euler("ZXY", ..., degrees=True)``). Angles are in degrees.
* Quaternions are ``(x, y, z, w)`` (scipy's order), canonicalised to ``w >= 0``.
* Lengths are multiplied by ``scale`` (default 0.01: centimetres to metres), both OFFSETs and
  position channels. A joint with position channels (the root always, others rarely) uses them as
  its per-frame local translation instead of its OFFSET, component by component, as most BVH
  readers do; the OFFSET is still kept in :attr:`Skeleton.offsets`.
* Every problem with the file raises :class:`MotionDataError` naming the file and, where it
  applies, the 1-based line.

The frame block is parsed in one ``numpy.loadtxt`` call and Euler angles are converted for all
frames and joints at once, not value by value (the dataset build's time: docs/benchmarks.md).
"""

# Written by hand because no maintained, numpy-vectorised BVH reader with clear errors exists on
# PyPI: ``bvh`` 0.3 converts one value at a time in pure Python and reports no line numbers, and
# ``pymo`` there is an unrelated MongoDB package (PyMO's BVH parser is not published under it).

from __future__ import annotations

import dataclasses
import os
import re
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
from scipy.spatial.transform import Rotation

from mann_jax.data.errors import MotionDataError
from mann_jax.data.skeleton import Motion, Skeleton

__all__ = ["format_bvh", "load_bvh", "parse_bvh", "save_bvh"]

# Canonical channel name -> (kind, axis index).
_CHANNELS: dict[str, tuple[str, int]] = {
    "xposition": ("position", 0),
    "yposition": ("position", 1),
    "zposition": ("position", 2),
    "xrotation": ("rotation", 0),
    "yrotation": ("rotation", 1),
    "zrotation": ("rotation", 2),
}
_CHANNEL_LIST = "Xposition, Yposition, Zposition, Xrotation, Yrotation, Zrotation"
_AXIS_LETTERS = "XYZ"
_FRAMES_RE = re.compile(r"frames\s*:\s*(.*)", re.IGNORECASE)
_FRAME_TIME_RE = re.compile(r"frame\s+time\s*:\s*(.*)", re.IGNORECASE)
_LOADTXT_ROW_RE = re.compile(r"at row (\d+)")

# Formats used by :func:`format_bvh`.
_WRITE_ROOT_CHANNELS = ("Xposition", "Yposition", "Zposition", "Zrotation", "Xrotation", "Yrotation")
_WRITE_JOINT_CHANNELS = ("Zrotation", "Xrotation", "Yrotation")
_WRITE_ORDER = "ZXY"
_VALUE_FORMAT = "%.6f"


@dataclasses.dataclass
class _Node:
    """One point of the hierarchy while parsing."""

    name: str
    parent: int
    line: int
    is_end_site: bool
    offset: tuple[float, float, float] | None = None
    # (kind, axis) per channel, in file order; None until CHANNELS is seen.
    channels: list[tuple[str, int]] | None = None
    first_column: int = 0


class _HierarchyParser:
    """Recursive-descent parser over the hierarchy tokens ``(token, line)``."""

    def __init__(self, tokens: list[tuple[str, int]], path: str | os.PathLike | None, motion_line: int):
        self.tokens = tokens
        self.pos = 0
        self.path = path
        self.motion_line = motion_line
        self.nodes: list[_Node] = []
        self.names: dict[str, int] = {}

    def error(self, problem: str, line: int | None) -> MotionDataError:
        return MotionDataError(self.path, problem, line=line)

    def peek(self) -> tuple[str, int] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def rest_of_line(self, line: int) -> list[str]:
        """Consume and return the tokens that follow on ``line``."""
        out = []
        while self.pos < len(self.tokens) and self.tokens[self.pos][1] == line:
            out.append(self.tokens[self.pos][0])
            self.pos += 1
        return out

    def parse(self) -> list[_Node]:
        tok = self.peek()
        if tok is None or tok[0].upper() != "ROOT":
            found = "MOTION" if tok is None else repr(tok[0])
            raise self.error(f"expected ROOT after HIERARCHY, found {found}",
                             self.motion_line if tok is None else tok[1])
        self.pos += 1
        self.parse_block(tok[1], parent=-1, end_site=False)
        tok = self.peek()
        if tok is not None:
            if tok[0].upper() == "ROOT":
                raise self.error("a second ROOT: only one skeleton per file is supported", tok[1])
            raise self.error(f"unexpected {tok[0]!r} after the ROOT joint was closed (unbalanced braces?)",
                             tok[1])
        return self.nodes

    def add_node(self, name: str, parent: int, line: int, end_site: bool) -> int:
        if name in self.names:
            first = self.nodes[self.names[name]].line
            raise self.error(f"duplicate point name {name!r} (first at line {first})", line)
        self.names[name] = len(self.nodes)
        self.nodes.append(_Node(name=name, parent=parent, line=line, is_end_site=end_site))
        return len(self.nodes) - 1

    def parse_block(self, line: int, parent: int, end_site: bool) -> None:
        """Parse a joint after its keyword (``ROOT``/``JOINT``/``End``): name, ``{``, body, ``}``."""
        words = self.rest_of_line(line)
        if words[-1:] == ["{"]:  # "JOINT Name {" on one line: leave the brace to be read below
            words.pop()
            self.pos -= 1
        if end_site:
            if [w.upper() for w in words] != ["SITE"]:
                raise self.error(f"expected 'End Site', found {' '.join(['End', *words])!r}", line)
            name = self.nodes[parent].name + "Site"
        else:
            if not words:
                raise self.error("joint without a name", line)
            name = " ".join(words)
        index = self.add_node(name, parent, line, end_site)
        node = self.nodes[index]

        tok = self.peek()
        if tok is None or tok[0] != "{":
            found = "MOTION" if tok is None else repr(tok[0])
            raise self.error(f"expected '{{' to open {name!r}, found {found}",
                             self.motion_line if tok is None else tok[1])
        open_line = tok[1]
        self.pos += 1

        while True:
            tok = self.peek()
            if tok is None:
                raise self.error(f"{name!r} (opened at line {open_line}) is never closed before MOTION "
                                 "(unbalanced braces)", open_line)
            word, tline = tok
            self.pos += 1
            key = word.upper()
            if word == "}":
                break
            if key == "OFFSET":
                if node.offset is not None:
                    raise self.error(f"second OFFSET for {name!r}", tline)
                node.offset = self.parse_offset(tline)
            elif key == "CHANNELS":
                if end_site:
                    raise self.error("an End Site cannot have CHANNELS", tline)
                if node.channels is not None:
                    raise self.error(f"second CHANNELS for {name!r}", tline)
                node.channels = self.parse_channels(tline)
            elif key == "JOINT":
                if end_site:
                    raise self.error("an End Site cannot contain a JOINT", tline)
                self.check_header(node)
                self.parse_block(tline, parent=index, end_site=False)
            elif key == "END":
                if end_site:
                    raise self.error("an End Site cannot contain another End Site", tline)
                self.check_header(node)
                self.parse_block(tline, parent=index, end_site=True)
            else:
                raise self.error(f"unexpected token {word!r} in {name!r}", tline)
        self.check_header(node, close_line=tok[1])

    def check_header(self, node: _Node, close_line: int | None = None) -> None:
        """OFFSET (and CHANNELS for joints) must precede children and the closing brace."""
        where = close_line if close_line is not None else node.line
        if node.offset is None:
            raise self.error(f"{node.name!r} (line {node.line}) has no OFFSET", where)
        if not node.is_end_site and node.channels is None:
            raise self.error(f"{node.name!r} (line {node.line}) has no CHANNELS", where)

    def parse_offset(self, line: int) -> tuple[float, float, float]:
        words = self.rest_of_line(line)
        if len(words) != 3:
            raise self.error(f"OFFSET needs 3 numbers, found {len(words)}", line)
        try:
            x, y, z = (float(w) for w in words)
        except ValueError:
            raise self.error(f"OFFSET values must be numbers, found {' '.join(words)!r}", line) from None
        values = (x, y, z)
        if not all(np.isfinite(values)):
            raise self.error(f"OFFSET values must be finite, found {' '.join(words)!r}", line)
        return values

    def parse_channels(self, line: int) -> list[tuple[str, int]]:
        words = self.rest_of_line(line)
        if not words:
            raise self.error("CHANNELS needs a count and channel names", line)
        try:
            count = int(words[0])
        except ValueError:
            raise self.error(f"CHANNELS count must be an integer, found {words[0]!r}", line) from None
        names = words[1:]
        if count < 0 or count > 6:
            raise self.error(f"CHANNELS count must be between 0 and 6, found {count}", line)
        if len(names) != count:
            raise self.error(f"CHANNELS says {count} but lists {len(names)} channel names", line)
        channels = []
        for channel in names:
            spec = _CHANNELS.get(channel.lower())
            if spec is None:
                raise self.error(f"unknown channel name {channel!r} (expected one of {_CHANNEL_LIST})", line)
            if spec in channels:
                raise self.error(f"channel {channel!r} listed twice", line)
            channels.append(spec)
        return channels


def _check_scale(scale: float) -> None:
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive number of metres per file unit, got {scale!r}")


def _euler_to_quat(order: str, degrees: np.ndarray) -> np.ndarray:
    """Quaternions ``(N, 4)`` xyzw of ``R = R_order[0] @ R_order[1] @ ...`` for angles ``(N, k)`` in degrees.

    Equals scipy's intrinsic ``Rotation.from_euler(order.upper(), degrees, degrees=True)`` (tested)
    but is ~10x faster, because it multiplies the sparse elementary quaternions column-wise.
    """
    half = np.radians(degrees) * 0.5
    sin, cos = np.sin(half), np.cos(half)
    n = degrees.shape[0]
    q: list[np.ndarray] = [np.zeros(n), np.zeros(n), np.zeros(n), np.ones(n)]
    for m, letter in enumerate(order):
        k = _AXIS_LETTERS.index(letter)
        i, j = (k + 1) % 3, (k + 2) % 3  # (i, j, k) cyclic
        s, c = sin[:, m], cos[:, m]
        vi, vj, vk, w = q[i], q[j], q[k], q[3]
        # (v, w) * (s e_k, c) = (c v + s w e_k + s v x e_k, c w - s v_k); (v x e_k) = (v_j, -v_i, 0).
        new = [np.empty(0)] * 4
        new[i] = c * vi + s * vj
        new[j] = c * vj - s * vi
        new[k] = c * vk + s * w
        new[3] = c * w - s * vk
        q = new
    out = np.stack(q, axis=-1)
    out[out[:, 3] < 0] *= -1.0
    return out


def _read_frames(lines: list[str], first_line: int, num_channels: int,
                 path: str | os.PathLike | None) -> np.ndarray:
    """Parse frame lines (``first_line`` is the 1-based line of ``lines[0]``) into ``(T, C)``."""
    try:
        values = np.loadtxt(lines, dtype=np.float64, comments=None, ndmin=2)
    except ValueError as exc:
        _diagnose_frames(lines, first_line, num_channels, path)
        # Not expected to be reached: _diagnose_frames finds the bad line first.
        match = _LOADTXT_ROW_RE.search(str(exc))
        line = None if match is None else first_line + int(match.group(1))
        raise MotionDataError(path, f"cannot read the frame values ({exc})", line=line) from None
    if values.shape != (len(lines), num_channels):
        _diagnose_frames(lines, first_line, num_channels, path)
        raise MotionDataError(path, f"frame block has shape {values.shape}, expected "
                              f"({len(lines)}, {num_channels})", line=first_line)
    finite = np.isfinite(values)
    if not finite.all():
        row, col = np.argwhere(~finite)[0]
        raise MotionDataError(path, f"non-finite value {values[row, col]} in column {col + 1} of the "
                              "frame", line=first_line + int(row))
    return values


def _diagnose_frames(lines: list[str], first_line: int, num_channels: int,
                     path: str | os.PathLike | None) -> None:
    """Slow path after a failed fast parse: raise for the first bad frame line."""
    for row, text in enumerate(lines):
        words = text.split()
        if len(words) != num_channels:
            what = "a blank line" if not words else f"{len(words)} values"
            raise MotionDataError(path, f"frame line has {what}, expected {num_channels} values "
                                  "(one per channel)", line=first_line + row)
        for col, word in enumerate(words):
            try:
                if "_" in word:  # float() accepts "1_0", numpy does not
                    raise ValueError(word)
                float(word)
            except ValueError:
                raise MotionDataError(path, f"non-numeric value {word!r} in column {col + 1} of the frame",
                                      line=first_line + row) from None


def parse_bvh(text: str, *, path: str | os.PathLike | None = None, scale: float = 0.01,
              name: str | None = None) -> Motion:
    """Parse the text of a BVH file.

    Args:
      text: the whole file.
      path: the file the text came from, used in error messages and for the default name.
      scale: factor from file length units to metres (0.01 for centimetres).
      name: clip name; defaults to the stem of ``path``, or ``"motion"``.

    Returns:
      The motion, with End Sites as points named ``<parent>Site``.

    Raises:
      MotionDataError: naming the file (and line) for any malformed content.
    """
    _check_scale(scale)
    lines = _text_lines(text, path)
    tokens, motion_index = _hierarchy_tokens(lines, path)
    nodes = _HierarchyParser(tokens, path, motion_index + 1).parse()
    num_channels = _assign_columns(nodes, path)
    header = _motion_header(lines, motion_index, path)
    frame_lines, first_line = _frame_lines(lines, header, path)
    values = _read_frames(frame_lines, first_line, num_channels, path)

    offsets = np.array([node.offset for node in nodes], dtype=np.float64) * scale
    if name is None:
        name = Path(path).stem if path is not None else "motion"
    return Motion(name=name, skeleton=_skeleton(nodes, offsets), local_rotations=_local_rotations(nodes, values),
                  local_translations=_local_translations(nodes, values, offsets, scale),
                  frame_time=header.frame_time, frame_line=first_line)


def _text_lines(text: str, path: str | os.PathLike | None) -> list[str]:
    """The lines of ``text`` without a byte-order mark; raises if the text is blank."""
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip():
        raise MotionDataError(path, "file is empty")
    return text.splitlines()


def _hierarchy_tokens(lines: list[str], path: str | os.PathLike | None) -> tuple[list[tuple[str, int]], int]:
    """The ``(token, line)`` pairs between HIERARCHY and MOTION, and the 0-based index of the MOTION line."""
    tokens: list[tuple[str, int]] = []
    motion_index = None
    for index, line in enumerate(lines):
        words = line.split()
        if not words:
            continue
        if words[0].upper() == "MOTION":
            if len(words) != 1:
                raise MotionDataError(path, f"unexpected {' '.join(words[1:])!r} after MOTION",
                                      line=index + 1)
            motion_index = index
            break
        if not tokens and words[0].upper() != "HIERARCHY":
            raise MotionDataError(path, f"expected HIERARCHY at the start of the file, found {words[0]!r}",
                                  line=index + 1)
        tokens.extend((word, index + 1) for word in words)
    if motion_index is None:
        raise MotionDataError(path, "no MOTION section: the file has no frame data (truncated?)")
    if not tokens:
        raise MotionDataError(path, "no HIERARCHY section before MOTION", line=motion_index + 1)
    if len(tokens) > 1 and tokens[1][1] == tokens[0][1]:
        raise MotionDataError(path, f"unexpected {tokens[1][0]!r} after HIERARCHY", line=tokens[1][1])
    return tokens[1:], motion_index


def _assign_columns(nodes: list[_Node], path: str | os.PathLike | None) -> int:
    """The number of frame columns, after setting each node's first column (file order)."""
    column = 0
    for node in nodes:
        node.first_column = column
        column += len(node.channels or ())
    if column == 0:
        raise MotionDataError(path, "the hierarchy declares no channels", line=nodes[0].line)
    return column


class _MotionHeader(NamedTuple):
    """The values of the ``Frames:`` and ``Frame Time:`` lines after MOTION."""

    num_frames: int
    frames_line: int  # 1-based
    frame_time: float
    end: int  # 0-based index of the line after ``Frame Time:``


def _motion_header(lines: list[str], motion_index: int, path: str | os.PathLike | None) -> _MotionHeader:
    """The MOTION header: the frame count and the frame time, each checked before the next line is read."""
    value, frames_line = _header_value(lines, motion_index + 1, _FRAMES_RE, "Frames:", path)
    num_frames = _frame_count(value, frames_line, path)
    value, time_line = _header_value(lines, frames_line, _FRAME_TIME_RE, "Frame Time:", path)
    frame_time = _frame_time(value, time_line, path)
    return _MotionHeader(num_frames, frames_line, frame_time, end=time_line)


def _header_value(lines: list[str], start: int, pattern: re.Pattern[str], label: str,
                  path: str | os.PathLike | None) -> tuple[str, int]:
    """The value of the first non-blank line from ``lines[start]`` on, which must be ``label``, and its 1-based line."""
    cursor = start
    while cursor < len(lines) and not lines[cursor].strip():
        cursor += 1
    if cursor >= len(lines):
        raise MotionDataError(path, f"missing '{label}' after MOTION (file ends at line {len(lines)})",
                              line=len(lines))
    match = pattern.fullmatch(lines[cursor].strip())
    if match is None:
        raise MotionDataError(path, f"expected '{label} <value>', found {lines[cursor].strip()!r}",
                              line=cursor + 1)
    return match.group(1).strip(), cursor + 1


def _frame_count(value: str, line: int, path: str | os.PathLike | None) -> int:
    """The ``Frames:`` value as a positive whole number."""
    try:
        num_frames = int(value)
    except ValueError:
        raise MotionDataError(path, f"'Frames:' must be a whole number, found {value!r}", line=line) from None
    if num_frames < 0:
        raise MotionDataError(path, f"'Frames:' must not be negative, found {num_frames}", line=line)
    if num_frames == 0:
        raise MotionDataError(path, "the clip has zero frames ('Frames: 0')", line=line)
    return num_frames


def _frame_time(value: str, line: int, path: str | os.PathLike | None) -> float:
    """The ``Frame Time:`` value as a positive, finite number of seconds."""
    try:
        frame_time = float(value)
    except ValueError:
        raise MotionDataError(path, f"'Frame Time:' must be a number, found {value!r}", line=line) from None
    if not np.isfinite(frame_time) or frame_time <= 0:
        raise MotionDataError(path, f"'Frame Time:' must be a positive number of seconds, found {value!r}",
                              line=line)
    return frame_time


def _frame_lines(lines: list[str], header: _MotionHeader,
                 path: str | os.PathLike | None) -> tuple[list[str], int]:
    """The frame lines after the MOTION header and the 1-based line of the first; one per frame."""
    # Trailing blank lines are fine, anything else must be one frame per line.
    end = len(lines)
    while end > header.end and not lines[end - 1].strip():
        end -= 1
    frame_lines = lines[header.end:end]
    first_line = header.end + 1
    num_frames = header.num_frames
    if len(frame_lines) < num_frames:
        raise MotionDataError(path, f"file is truncated: 'Frames: {num_frames}' but only {len(frame_lines)} "
                              f"frame lines follow", line=header.frames_line)
    if len(frame_lines) > num_frames:
        raise MotionDataError(path, f"more frame lines than 'Frames: {num_frames}' says "
                              f"({len(frame_lines)} lines); first extra line here",
                              line=first_line + num_frames)
    return frame_lines, first_line


def _local_translations(nodes: list[_Node], values: np.ndarray, offsets: np.ndarray,
                        scale: float) -> np.ndarray:
    """The ``(T, J, 3)`` local translations: the offsets, with each position channel replacing its component."""
    translations = np.repeat(offsets[None], values.shape[0], axis=0)
    for j, node in enumerate(nodes):
        for c, (kind, axis) in enumerate(node.channels or ()):
            if kind == "position":
                translations[:, j, axis] = values[:, node.first_column + c] * scale
    return translations


def _rotation_groups(nodes: list[_Node]) -> dict[str, tuple[list[int], list[list[int]]]]:
    """The joints with rotation channels, grouped by axis order: ``order -> (joints, their columns)``."""
    # Grouping lets one vectorised conversion handle every joint that shares an order.
    groups: dict[str, tuple[list[int], list[list[int]]]] = {}
    for j, node in enumerate(nodes):
        order, columns = "", []
        for c, (kind, axis) in enumerate(node.channels or ()):
            if kind == "rotation":
                order += _AXIS_LETTERS[axis]
                columns.append(node.first_column + c)
        if order:
            joints, cols = groups.setdefault(order, ([], []))
            joints.append(j)
            cols.append(columns)
    return groups


def _local_rotations(nodes: list[_Node], values: np.ndarray) -> np.ndarray:
    """The ``(T, J, 4)`` local quaternions from the rotation channels; the identity for points without any."""
    num_frames = values.shape[0]
    rotations = np.zeros((num_frames, len(nodes), 4))
    rotations[..., 3] = 1.0
    for order, (joints, cols) in _rotation_groups(nodes).items():
        angles = values[:, np.array(cols)]  # (T, n, k)
        quats = _euler_to_quat(order, angles.reshape(-1, len(order)))
        rotations[:, joints] = quats.reshape(num_frames, len(joints), 4)
    return rotations


def _skeleton(nodes: list[_Node], offsets: np.ndarray) -> Skeleton:
    """The skeleton of the parsed hierarchy, with ``offsets`` already scaled to metres."""
    return Skeleton(
        names=tuple(node.name for node in nodes),
        parents=np.array([node.parent for node in nodes], dtype=np.int64),
        offsets=offsets,
        is_end_site=np.array([node.is_end_site for node in nodes], dtype=bool),
    )


def load_bvh(path: str | os.PathLike, *, scale: float = 0.01) -> Motion:
    """Read a BVH file; the motion is named after the file stem.

    Raises:
      MotionDataError: if the file cannot be read or is malformed.
    """
    try:
        with open(path, encoding="utf-8-sig") as f:
            text = f.read()
    except UnicodeDecodeError as exc:
        raise MotionDataError(path, f"not a text file ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise MotionDataError(path, f"cannot read file: {exc.strerror or exc}") from exc
    return parse_bvh(text, path=path, scale=scale)


def _children(skeleton: Skeleton) -> list[list[int]]:
    """The children of each point, in point order."""
    children: list[list[int]] = [[] for _ in range(skeleton.num_points)]
    for j, p in enumerate(skeleton.parents):
        if p >= 0:
            children[int(p)].append(j)
    return children


def format_bvh(motion: Motion, *, scale: float = 0.01) -> str:
    """The text of a BVH file for ``motion`` (inverse of :func:`parse_bvh`).

    The root gets ``Xposition Yposition Zposition Zrotation Xrotation Yrotation``, other joints
    ``Zrotation Xrotation Yrotation``; a non-root joint whose translation ever differs from its
    offset (by more than 1e-9 m) also gets the three position channels first, so nothing is lost.
    End Sites are written from the skeleton offsets (their names are implied by their parents).
    Values are written with 6 decimals (in file units and degrees).

    Args:
      motion: the clip; its skeleton must be in depth-first order.
      scale: metres per file unit (0.01 writes centimetres).

    Raises:
      ValueError: if the skeleton cannot be written as BVH (not depth-first, children under an End
        Site, an End Site without a parent, or End Site translations that differ from the offset).
    """
    _check_scale(scale)
    children, moving = _writable_layout(motion)
    writer = _HierarchyWriter(motion, _write_angles(motion), children, moving, scale)
    if motion.skeleton.is_end_site[0]:
        raise ValueError("the root cannot be an End Site")
    writer.write(0, 0)
    if writer.visited != list(range(motion.skeleton.num_points)):
        raise ValueError("the skeleton is not in depth-first order; BVH would reorder its points")
    num_frames = motion.local_rotations.shape[0]
    header = [*writer.lines, "MOTION", f"Frames: {num_frames}", f"Frame Time: {float(motion.frame_time)!r}"]
    return "\n".join(header) + "\n" + _frame_rows(writer.columns) + "\n"


def _writable_layout(motion: Motion) -> tuple[list[list[int]], np.ndarray]:
    """The children of each point and which points move off their offset; raises if BVH cannot store them."""
    skeleton = motion.skeleton
    num_frames, num_points = motion.local_rotations.shape[:2]
    if num_points != skeleton.num_points or motion.local_translations.shape != (num_frames, num_points, 3):
        raise ValueError("motion arrays do not match the skeleton")
    children = _children(skeleton)
    moving = np.abs(motion.local_translations - skeleton.offsets[None]).max(axis=0).max(axis=-1) > 1e-9
    for j in np.flatnonzero(skeleton.is_end_site):
        if j == 0 or children[j]:
            raise ValueError(f"End Site {skeleton.names[j]!r} must have a parent and no children")
        if moving[j]:
            raise ValueError(f"End Site {skeleton.names[j]!r} has translations that differ from its offset; "
                             "BVH cannot store them")
    return children, moving


def _write_angles(motion: Motion) -> np.ndarray:
    """The ``(T, J, 3)`` Euler angles in degrees, in the written channel order, of the local rotations."""
    num_frames, num_points = motion.local_rotations.shape[:2]
    rotations = Rotation.from_quat(motion.local_rotations.reshape(-1, 4))
    # Near gimbal lock any of the equivalent angle triples is a correct answer.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Gg]imbal lock.*")
        return rotations.as_euler(_WRITE_ORDER, degrees=True).reshape(num_frames, num_points, 3)


def _format_values(values: np.ndarray) -> str:
    """The values as one space-separated string in the written number format."""
    return " ".join(_VALUE_FORMAT % x for x in values)


def _frame_rows(columns: list[np.ndarray]) -> str:
    """The frame block: one line per frame of the channel columns side by side."""
    values = np.concatenate(columns, axis=1)
    row_format = " ".join([_VALUE_FORMAT] * values.shape[1])
    return "\n".join(row_format % tuple(row) for row in values.tolist())


@dataclasses.dataclass
class _HierarchyWriter:
    """Writes the HIERARCHY lines depth-first, collecting each joint's frame columns in the same order."""

    motion: Motion
    angles: np.ndarray  # (T, J, 3) in _WRITE_ORDER
    children: list[list[int]]
    moving: np.ndarray  # (J,) bool: needs position channels
    scale: float
    lines: list[str] = dataclasses.field(default_factory=lambda: ["HIERARCHY"])
    columns: list[np.ndarray] = dataclasses.field(default_factory=list)
    visited: list[int] = dataclasses.field(default_factory=list)

    def write(self, j: int, depth: int) -> None:
        """Appends the lines of point ``j`` and its subtree, depth-first."""
        self.visited.append(j)
        skeleton = self.motion.skeleton
        pad = "  " * depth
        offset = f"{pad}  OFFSET {_format_values(skeleton.offsets[j] / self.scale)}"
        if skeleton.is_end_site[j]:
            self.lines.extend([f"{pad}End Site", f"{pad}{{", offset, f"{pad}}}"])
            return
        self.lines.extend([f"{pad}{'ROOT' if j == 0 else 'JOINT'} {skeleton.names[j]}", f"{pad}{{", offset,
                           f"{pad}  {self.channels(j)}"])
        for child in self.children[j]:
            self.write(child, depth + 1)
        self.lines.append(f"{pad}}}")

    def channels(self, j: int) -> str:
        """The CHANNELS declaration of joint ``j``, after adding its frame columns."""
        if j == 0 or self.moving[j]:
            self.columns.append(self.motion.local_translations[:, j] / self.scale)
            channels = f"CHANNELS 6 {' '.join(_WRITE_ROOT_CHANNELS)}"
        else:
            channels = f"CHANNELS 3 {' '.join(_WRITE_JOINT_CHANNELS)}"
        self.columns.append(self.angles[:, j])
        return channels


def save_bvh(motion: Motion, path: str | os.PathLike, *, scale: float = 0.01) -> None:
    """Write ``motion`` to ``path`` as BVH (see :func:`format_bvh`)."""
    Path(path).write_text(format_bvh(motion, scale=scale), encoding="utf-8")

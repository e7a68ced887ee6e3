"""Mode-Adaptive Neural Network (MANN, Zhang et al. 2018) in flax.nnx.

Design choices:

* **Normalised in, normalised out.** :class:`MANN` consumes the *normalised* 480-vector and
  predicts the *normalised* 363-vector; the gating input is gathered from that normalised vector,
  as in the original. The normalisation statistics are data, not parameters: they live outside the
  module in a :class:`mann_jax.data.normalisation.Normalisation` (a NamedTuple, hence a pytree)
  with helpers to normalise inputs and denormalise outputs. The model state therefore holds only
  trainable weights (plus the dropout RNG stream, see below).
* **Layout.** Expert weights ``alpha`` are ``(n_experts, in, out)`` so a layer is ``x @ alpha_k``;
  the AI4Animation files store ``[out, in]`` and :mod:`mann_jax.export.ai4animation` transposes.
  Gating layers are :class:`Dense` (``kernel`` ``(in, out)`` and ``bias``, as ``nnx.Linear``;
  not ``nnx.Linear`` itself so that all weights of a module come from one jitted draw: eager
  per-layer initialisers cost seconds of compilation per new shape on a small CPU).
* **Two equal formulations** of an expert layer: ``"blend"`` builds per-sample weights
  ``W = sum_k w_k alpha_k`` and ``b = sum_k w_k beta_k`` (the original); ``"mix"`` mixes the expert
  outputs ``sum_k w_k (x alpha_k + beta_k)``, computed as ONE matmul
  ``[w_1 x, ..., w_K x] @ [alpha_1; ...; alpha_K]`` (the ``(K, in, out)`` weights reshape to
  ``(K*in, out)`` at no cost). ``"auto"`` picks ``"mix"``, measured the faster at batch 1 and 32,
  forward and backward (``python -m experiments.bench_train``): blending materialises one
  ``(in, out)`` matrix per sample, and its backward pass one gradient per sample; mixing is a
  single ``(batch, K*in) x (K*in, out)`` product in both directions.
* **Dropout** (keep probability 0.7 -> rate 0.3) sits on the input of every gating and expert
  layer. It follows flax.nnx's mode switch: ``model.train()`` / ``model.eval()`` (or the
  non-mutating ``nnx.view(model, deterministic=...)``). Modules are built in training mode, the
  nnx default. The model keeps its own ``dropout`` RNG stream (seeded from the ``rngs`` given to
  the constructor) for stateful use; pure functions should pass an explicit key
  (``model(x, rngs=key)`` or :func:`apply`), which is split per dropout site and leaves the stored
  stream untouched.
* **Initialisation** exactly as the original: expert weights ``U(+-sqrt(6 / (fan_in * fan_out)))``
  (a product, so tiny), gating weights ``U(+-sqrt(6 / (fan_in + fan_out)))`` (Glorot uniform),
  every bias zero. Weights are drawn from the ``params`` stream of ``rngs``.
* **Functional form.** ``nnx.split(model)`` -> ``(graphdef, state)`` and ``nnx.merge`` work;
  :func:`apply` is the pure ``(graphdef, state, x, key) -> y`` function a sweep vmaps over a
  stacked state.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any, Literal, overload

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mann_jax.config_errors import ConfigError

Formulation = Literal["auto", "blend", "mix"]
RngsLike = nnx.Rngs | jax.Array | None

#: The 19 gating inputs of the dog MANN: velocities of the four paw sites (bones 10, 15, 19, 23),
#: then speed and the 6 style values of the current trajectory sample.
DEFAULT_GATING_INDICES: tuple[int, ...] = (
    285, 286, 287, 345, 346, 347, 393, 394, 395, 441, 442, 443, 84, 85, 86, 87, 88, 89, 90,
)


def expert_weight_bound(fan_in: int, fan_out: int) -> float:
    """Half-width of the original expert weight initialiser: ``sqrt(6 / (fan_in * fan_out))``."""
    return math.sqrt(6.0 / (fan_in * fan_out))


def gating_weight_bound(fan_in: int, fan_out: int) -> float:
    """Half-width of the original gating weight initialiser: ``sqrt(6 / (fan_in + fan_out))``."""
    return math.sqrt(6.0 / (fan_in + fan_out))


@functools.partial(jax.jit, static_argnums=(1, 2))
def _uniform_draws(
    key: jax.Array, shapes: tuple[tuple[int, ...], ...], bounds: tuple[float, ...]
) -> list[jax.Array]:
    """Float32 ``U(-bound, bound)`` arrays of the given shapes from one key, in ONE program.

    Eager ``jax.random.uniform`` compiles several primitives per new shape (seconds on a small
    CPU); one jitted draw per module configuration keeps model construction fast.
    """
    sizes = [math.prod(s) for s in shapes]
    flat = jax.random.uniform(key, (sum(sizes),), jnp.float32, minval=-1.0, maxval=1.0)
    out, start = [], 0
    for shape, size, bound in zip(shapes, sizes, bounds):
        out.append(flat[start : start + size].reshape(shape) * jnp.float32(bound))
        start += size
    return out


def _checked(
    arrays: Sequence[Any], shapes: Sequence[tuple[int, ...]], what: str
) -> list[jax.Array]:
    """Float32 copies of ``arrays`` after checking their shapes."""
    if len(arrays) != len(shapes):
        raise ValueError(f"{what}: expected {len(shapes)} arrays, got {len(arrays)}")
    out = []
    for a, sh in zip(arrays, shapes):
        if tuple(a.shape) != tuple(sh):
            raise ValueError(f"{what}: expected shape {tuple(sh)}, got {tuple(a.shape)}")
        out.append(jnp.asarray(a, jnp.float32))
    return out


def _as_dropout_rngs(rngs: RngsLike, fallback: nnx.Rngs) -> nnx.Rngs:
    """Turns a key / Rngs / None into an ``nnx.Rngs`` that yields a fresh key per dropout site."""
    if rngs is None:
        return fallback
    if isinstance(rngs, nnx.Rngs):
        return rngs
    return nnx.Rngs(dropout=rngs)


def resolve_formulation(formulation: Formulation) -> Literal["blend", "mix"]:
    """Resolves ``"auto"`` to the formulation measured faster (``"mix"``; see the module docstring)."""
    if formulation == "auto":
        return "mix"
    if formulation not in ("blend", "mix"):
        raise ConfigError(f"formulation must be 'auto', 'blend' or 'mix', got {formulation!r}")
    return formulation


#: Values of ``MANN(matmul_precision=...)`` (names ``jax.default_matmul_precision`` accepts).
MATMUL_PRECISIONS: tuple[str, ...] = ("highest", "float32", "high", "bfloat16_3x", "tensorfloat32", "default",
                                      "bfloat16")


class Dense(nnx.Module):
    """A plain affine layer ``x @ kernel + bias`` (kernel ``(in, out)``, as ``nnx.Linear``).

    Args:
        kernel: Initial kernel ``(in, out)``.
        bias: Initial bias ``(out,)``; zeros when omitted.
    """

    def __init__(self, kernel: jax.Array, bias: jax.Array | None = None) -> None:
        self.kernel = nnx.Param(jnp.asarray(kernel, jnp.float32))
        out = self.kernel.shape[-1]
        self.bias = nnx.Param(jnp.zeros((out,), jnp.float32) if bias is None else bias)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Returns ``x @ kernel + bias``."""
        return x @ self.kernel[...] + self.bias[...]


class GatingNetwork(nnx.Module):
    """Gating network: dropout, linear, ELU, dropout, linear, ELU, dropout, linear, softmax.

    Weights are ``U(+-sqrt(6 / (fan_in + fan_out)))`` (Glorot uniform), biases zero.

    Args:
        in_features: Number of gating inputs (19 for the dog).
        n_experts: Number of experts (size of the softmax).
        hidden: Hidden width (32).
        keep_prob: Dropout keep probability (0.7).
        rngs: Random streams; weights use ``params``.
        kernels: Initial kernels instead of a random draw (biases start at zero).
    """

    @staticmethod
    def kernel_shapes(
        in_features: int, n_experts: int, hidden: int
    ) -> tuple[tuple[int, int], ...]:
        """Shapes of the three kernels."""
        return ((in_features, hidden), (hidden, hidden), (hidden, n_experts))

    def __init__(
        self,
        in_features: int = 19,
        n_experts: int = 8,
        *,
        hidden: int = 32,
        keep_prob: float = 0.7,
        rngs: nnx.Rngs | None = None,
        kernels: Sequence[jax.Array] | None = None,
    ) -> None:
        shapes = self.kernel_shapes(in_features, n_experts, hidden)
        if kernels is None:
            if rngs is None:
                raise ValueError("GatingNetwork needs rngs (or initial kernels)")
            bounds = tuple(gating_weight_bound(*sh) for sh in shapes)
            kernels = _uniform_draws(rngs.params(), shapes, bounds)
        k0, k1, k2 = _checked(kernels, shapes, "gating kernels")
        self.layer0 = Dense(k0)
        self.layer1 = Dense(k1)
        self.layer2 = Dense(k2)
        self.dropout = nnx.Dropout(1.0 - keep_prob)

    def logits(self, g: jax.Array, *, rngs: nnx.Rngs | None = None) -> jax.Array:
        """Pre-softmax scores, shape ``(..., n_experts)``."""
        h = self.dropout(g, rngs=rngs)
        h = jax.nn.elu(self.layer0(h))
        h = self.dropout(h, rngs=rngs)
        h = jax.nn.elu(self.layer1(h))
        h = self.dropout(h, rngs=rngs)
        return self.layer2(h)

    def __call__(self, g: jax.Array, *, rngs: nnx.Rngs | None = None) -> jax.Array:
        """Blending coefficients ω, shape ``(..., n_experts)``, summing to 1."""
        return jax.nn.softmax(self.logits(g, rngs=rngs), axis=-1)


class ExpertLinear(nnx.Module):
    """One MANN layer: ``n_experts`` linear maps blended by per-sample coefficients.

    Attributes:
        alpha: Expert weights, ``(n_experts, in, out)``.
        beta: Expert biases, ``(n_experts, out)``.

    Args:
        in_features: Input width.
        out_features: Output width.
        n_experts: Number of experts.
        rngs: Random streams; weights use ``params``.
        alpha: Initial weights instead of a random draw (biases start at zero).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        n_experts: int,
        *,
        rngs: nnx.Rngs | None = None,
        alpha: jax.Array | None = None,
    ) -> None:
        shape = (n_experts, in_features, out_features)
        if alpha is None:
            if rngs is None:
                raise ValueError("ExpertLinear needs rngs (or initial alpha)")
            bound = expert_weight_bound(in_features, out_features)
            alpha = _uniform_draws(rngs.params(), (shape,), (bound,))[0]
        (alpha,) = _checked((alpha,), (shape,), "expert alpha")
        self.alpha = nnx.Param(alpha)
        self.beta = nnx.Param(jnp.zeros((n_experts, out_features), jnp.float32))

    def __call__(
        self, x: jax.Array, omega: jax.Array, *, formulation: Formulation = "auto"
    ) -> jax.Array:
        """Applies the blended layer.

        Args:
            x: Inputs, ``(batch, in)``.
            omega: Blending coefficients, ``(batch, n_experts)``.
            formulation: ``"blend"`` (blend weights per sample), ``"mix"`` (mix expert outputs)
                or ``"auto"`` (the faster: mix). Mathematically equal.

        Returns:
            ``(batch, out)``.
        """
        alpha, beta = self.alpha[...], self.beta[...]
        if resolve_formulation(formulation) == "blend":
            w = jnp.einsum("bk,kio->bio", omega, alpha)
            b = omega @ beta
            return jnp.einsum("bi,bio->bo", x, w) + b
        # Mixing written as ONE matmul: sum_k w_k (x alpha_k) = [w_1 x, ..., w_K x] @ [alpha_1; ...; alpha_K].
        # The (K, in, out) weights reshape to (K*in, out) for free; an einsum "bi,kio->bko" would make
        # XLA transpose every expert matrix each step.
        k, i, o = alpha.shape
        scaled = (omega[:, :, None] * x[:, None, :]).reshape(x.shape[0], k * i)
        return scaled @ alpha.reshape(k * i, o) + omega @ beta


class MANN(nnx.Module):
    """Mode-Adaptive Neural Network: a gating network blending expert MLPs (ELU, ELU, linear).

    Args:
        input_size: Width of the (normalised) input vector (480).
        output_size: Width of the (normalised) output vector (363).
        hidden_sizes: Widths of the two expert hidden layers ((512, 512)).
        n_experts: Number of experts (8).
        gating_indices: Columns of the normalised input fed to the gating network.
        gating_hidden: Gating hidden width (32).
        keep_prob: Dropout keep probability on every layer input (0.7).
        formulation: Default expert-layer formulation, ``"auto"``, ``"blend"`` or ``"mix"``.
        matmul_precision: Precision of every product in the forward (and so backward) pass, as
            ``jax.default_matmul_precision`` takes it. ``"highest"`` (default): float32 products
            on every backend, as the original, so CPU and GPU runs and every sweep strategy agree
            to float rounding. ``"default"`` lets NVIDIA GPUs use TF32 (about 1e-3 relative
            rounding per product, enough for a sweep's strategies to drift apart by a few percent
            in some weights).
        rngs: Random streams: ``params`` initialises the weights, ``dropout`` seeds the stored
            dropout stream (both fall back to ``default``, e.g. ``nnx.Rngs(23456)``).
    """

    def __init__(
        self,
        *,
        input_size: int = 480,
        output_size: int = 363,
        hidden_sizes: Sequence[int] = (512, 512),
        n_experts: int = 8,
        gating_indices: Sequence[int] = DEFAULT_GATING_INDICES,
        gating_hidden: int = 32,
        keep_prob: float = 0.7,
        formulation: Formulation = "auto",
        matmul_precision: str = "highest",
        rngs: nnx.Rngs,
    ) -> None:
        if len(hidden_sizes) != 2:
            raise ConfigError(f"MANN has two hidden layers; got hidden_sizes={tuple(hidden_sizes)}")
        idx = tuple(int(i) for i in gating_indices)
        if not idx or min(idx) < 0 or max(idx) >= input_size:
            raise ValueError(f"gating_indices must lie in [0, {input_size}); got {idx}")
        resolve_formulation(formulation)  # validates the name
        if matmul_precision not in MATMUL_PRECISIONS:
            raise ConfigError(f"matmul_precision must be one of {MATMUL_PRECISIONS}, got {matmul_precision!r}")
        self.matmul_precision = matmul_precision
        self.input_size = input_size
        self.output_size = output_size
        self.hidden_sizes = tuple(int(h) for h in hidden_sizes)
        self.n_experts = n_experts
        self.gating_indices = idx
        self.keep_prob = keep_prob
        self.formulation = formulation
        h0, h1 = self.hidden_sizes
        # Every weight from ONE jitted draw (fast construction; see _uniform_draws).
        gating_shapes = GatingNetwork.kernel_shapes(len(idx), n_experts, gating_hidden)
        expert_dims = ((input_size, h0), (h0, h1), (h1, output_size))
        shapes = gating_shapes + tuple((n_experts, i, o) for i, o in expert_dims)
        bounds = tuple(gating_weight_bound(*sh) for sh in gating_shapes) + tuple(
            expert_weight_bound(i, o) for i, o in expert_dims
        )
        draws = _uniform_draws(rngs.params(), shapes, bounds)
        self.gating = GatingNetwork(
            len(idx), n_experts, hidden=gating_hidden, keep_prob=keep_prob, kernels=draws[:3]
        )
        self.layer0 = ExpertLinear(input_size, h0, n_experts, alpha=draws[3])
        self.layer1 = ExpertLinear(h0, h1, n_experts, alpha=draws[4])
        self.layer2 = ExpertLinear(h1, output_size, n_experts, alpha=draws[5])
        self.dropout = nnx.Dropout(1.0 - keep_prob)
        self.rngs = nnx.Rngs(dropout=rngs.dropout())

    def gating_coefficients(
        self,
        x: jax.Array,
        *,
        expert_mask: jax.Array | None = None,
        rngs: RngsLike = None,
    ) -> jax.Array:
        """Blending coefficients ω for normalised inputs ``x`` (``(..., n_experts)``).

        With ``expert_mask`` the masked experts' coefficients are removed and the rest
        renormalised to sum to 1.
        """
        r = _as_dropout_rngs(rngs, self.rngs)
        with jax.default_matmul_precision(self.matmul_precision):
            omega = self.gating(x[..., jnp.asarray(self.gating_indices)], rngs=r)
        return _apply_expert_mask(omega, expert_mask)

    def __call__(
        self,
        x: jax.Array,
        *,
        expert_mask: jax.Array | None = None,
        return_gating: bool = False,
        rngs: RngsLike = None,
        formulation: Formulation | None = None,
    ) -> jax.Array | tuple[jax.Array, jax.Array]:
        """Predicts the normalised output from the normalised input.

        Args:
            x: Normalised inputs, ``(..., input_size)`` (any number of leading axes, or none).
            expert_mask: Optional ``(n_experts,)`` 0/1 vector; experts with 0 are switched off
                (their coefficient removed, the others renormalised). All zero gives NaN.
            return_gating: Also return the coefficients ω actually used (after the mask).
            rngs: Dropout randomness in training mode: a key (split per dropout site), an
                ``nnx.Rngs``, or None for the model's stored stream. Ignored in eval mode.
            formulation: Overrides the constructor's formulation for this call.

        Returns:
            ``y`` of shape ``(..., output_size)``, or ``(y, omega)`` with ``return_gating``.
        """
        r = _as_dropout_rngs(rngs, self.rngs)
        lead = x.shape[:-1]
        x2 = x.reshape((-1, x.shape[-1]))
        form = resolve_formulation(formulation or self.formulation)
        with jax.default_matmul_precision(self.matmul_precision):
            omega = self.gating(x2[:, jnp.asarray(self.gating_indices)], rngs=r)
            omega = _apply_expert_mask(omega, expert_mask)
            h = self.dropout(x2, rngs=r)
            h = jax.nn.elu(self.layer0(h, omega, formulation=form))
            h = self.dropout(h, rngs=r)
            h = jax.nn.elu(self.layer1(h, omega, formulation=form))
            h = self.dropout(h, rngs=r)
            y = self.layer2(h, omega, formulation=form).reshape(lead + (self.output_size,))
        if return_gating:
            return y, omega.reshape(lead + (self.n_experts,))
        return y


def _apply_expert_mask(omega: jax.Array, expert_mask: jax.Array | None) -> jax.Array:
    """Zeroes masked experts' coefficients and renormalises the rest to sum to 1."""
    if expert_mask is None:
        return omega
    m = jnp.asarray(expert_mask, omega.dtype)
    masked = omega * m
    return masked / jnp.sum(masked, axis=-1, keepdims=True)


@overload
def apply(
    graphdef: nnx.GraphDef[MANN], state: nnx.State | tuple[nnx.State, ...], x: jax.Array,
    rng: jax.Array | None = None, *, expert_mask: jax.Array | None = None, return_gating: Literal[False] = False,
    formulation: Formulation | None = None,
) -> jax.Array: ...


@overload
def apply(
    graphdef: nnx.GraphDef[MANN], state: nnx.State | tuple[nnx.State, ...], x: jax.Array,
    rng: jax.Array | None = None, *, expert_mask: jax.Array | None = None, return_gating: Literal[True],
    formulation: Formulation | None = None,
) -> tuple[jax.Array, jax.Array]: ...


def apply(
    graphdef: nnx.GraphDef[MANN],
    state: nnx.State | tuple[nnx.State, ...],
    x: jax.Array,
    rng: jax.Array | None = None,
    *,
    expert_mask: jax.Array | None = None,
    return_gating: bool = False,
    formulation: Formulation | None = None,
) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Pure forward pass of a split MANN: ``nnx.merge(graphdef, state)(x, rngs=rng, ...)``.

    The train/eval mode is part of ``graphdef`` (split a model after ``model.train()`` or
    ``model.eval()``). In training mode pass ``rng``; the stored RNG stream is not advanced, so
    ``state`` is unchanged and the function is safe under ``jax.jit`` / ``jax.vmap``.

    Args:
        graphdef: From ``nnx.split(model)``.
        state: From ``nnx.split(model)`` (or a stack of such states under ``jax.vmap``); a tuple
            of states from a filtered split, e.g. ``nnx.split(model, nnx.Param, ...)``, so that
            gradients can be taken with respect to the parameters alone.
        x: Normalised inputs ``(..., input_size)``.
        rng: Dropout key (training mode only).
        expert_mask: See :meth:`MANN.__call__`.
        return_gating: See :meth:`MANN.__call__`.
        formulation: See :meth:`MANN.__call__`.

    Returns:
        As :meth:`MANN.__call__`.
    """
    states = state if isinstance(state, tuple) else (state,)
    model = nnx.merge(graphdef, *states, copy=True)
    return model(
        x, expert_mask=expert_mask, return_gating=return_gating, rngs=rng, formulation=formulation
    )


def count_parameters(model: MANN) -> dict[str, int]:
    """Number of scalars in the experts, the gating network and in total."""
    def size(tree: Any) -> int:
        return int(sum(np.prod(a.shape) for a in jax.tree.leaves(tree)))

    experts = sum(size(nnx.state(getattr(model, f"layer{i}"), nnx.Param)) for i in range(3))
    gating = size(nnx.state(model.gating, nnx.Param))
    return {"experts": experts, "gating": gating, "total": experts + gating}


def _tree_shapes(tree: Any) -> dict[str, tuple[int, ...]]:
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {"/".join(str(getattr(k, "key", k)) for k in path): tuple(np.shape(v)) for path, v in flat}


def check_params(params: Any, reference: Any, *, models_axis: bool = False) -> int | None:
    """Raise a clear ValueError unless ``params`` has the structure and shapes of ``reference``.

    With ``models_axis`` every leaf carries one more leading axis of the same length (the number of
    models, returned).
    """
    got, want = _tree_shapes(params), _tree_shapes(reference)
    if set(got) != set(want):
        missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
        raise ValueError(f"parameters do not match the model config: missing {missing}, unexpected {extra}")
    n_models = None
    bad = []
    for name, shape in want.items():
        g = got[name]
        if models_axis:
            if len(g) != len(shape) + 1:
                bad.append(f"{name}: {g} (expected a model axis before {shape})")
                continue
            n_models = g[0] if n_models is None else n_models
            if g[0] != n_models:
                bad.append(f"{name}: {g[0]} models, other leaves have {n_models}")
            g = g[1:]
        if g != shape:
            bad.append(f"{name}: {g} != {shape} expected by the config")
    if bad:
        raise ValueError("parameters do not match the model config: " + "; ".join(bad))
    return n_models

"""Compiler settings of the train step: XLA:CPU backend options (set before JAX starts) and the step's jit.

Two kinds of options, because XLA reads them at two times: per-program ``compiler_options`` go with
each :func:`jit_train_step`; backend extra options only through ``XLA_FLAGS`` when JAX starts its
backend, so :func:`configure_cpu_backend` must run before any JAX computation (every command calls it
first, through :mod:`mann_jax.cli`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any

import jax

from mann_jax import config_errors

#: XLA options a train step is compiled with, per platform. On CPU, XLA's default copy insertion
#: copies every donated parameter that the step reads and also updates in place (one copy of each
#: expert weight tensor per step); its region analysis sees that the reads come before the update and
#: drops them (tests/test_train.py checks the compiled step for such copies; timings in
#: docs/measurement_log.md).
TRAIN_STEP_COMPILER_OPTIONS: dict[str, dict[str, Any]] = {
    "cpu": {"xla_cpu_copy_insertion_use_region_analysis": True},
}


#: XLA:CPU options no per-program ``compiler_options`` can carry: backend extra options, which XLA
#: reads from ``XLA_FLAGS`` once, when JAX starts its backend (:func:`configure_cpu_backend` adds
#: them; every command of the project calls it first). ``xla_cpu_use_multi_output_fusion`` lets one
#: loop write several arrays, so Adam's two moments come out of one pass over gradient and moments
#: (faster on CPU, same bits: docs/measurement_log.md). Options named ``xla_...`` are not handed on
#: to LLVM: GPU backends ignore them.
#: Caveat: XLA:CPU leaves this fusion off by default, and in jaxlib 0.10.2 it aborts the process (a
#: CHECK failure in ``symbolic_map.cc``: "Number of dimensions of this map must match number of
#: results of other map") compiling some programs, e.g. four scatter-adds of the quarters of one
#: vector, ``sum(jnp.zeros(4, jnp.int32).at[c].add(1) for c in jnp.split(keys, 4))``. Every program
#: of the project compiles with it (the test suite runs with it on: ``tests/conftest.py``); for code
#: of your own that hits it, set :data:`OPT_OUT_ENV` to ``off``.
CPU_BACKEND_EXTRA_OPTIONS: tuple[str, ...] = ("xla_cpu_use_multi_output_fusion",)
#: Environment variable that, set to ``off``, keeps :func:`configure_cpu_backend` from adding anything.
OPT_OUT_ENV = "MANN_JAX_CPU_BACKEND_OPTIONS"


def jax_backend_started() -> bool:
    """Whether JAX has started a backend (so it has read ``XLA_FLAGS`` and its CPU device count)."""
    from jax._src import xla_bridge  # no public query for "backend started"

    return xla_bridge.backends_are_initialized()


def cpu_backend_opted_out() -> bool:
    """Whether :data:`OPT_OUT_ENV` is ``off`` (any case; unset means ``on``).

    Raises:
        ConfigError: it holds something other than ``on`` or ``off``.
    """
    raw = os.environ.get(OPT_OUT_ENV, "on")
    setting = raw.strip().lower()
    if setting not in ("on", "off"):
        raise config_errors.ConfigError(f"environment variable {OPT_OUT_ENV} must be 'on' or 'off', got {raw!r}")
    return setting == "off"


def configure_cpu_backend() -> bool:
    """Adds :data:`CPU_BACKEND_EXTRA_OPTIONS` to ``XLA_FLAGS``; call before JAX starts a backend.

    Returns whether it did. It does not when :data:`OPT_OUT_ENV` is ``off``, when ``XLA_FLAGS``
    already sets ``--xla_backend_extra_options`` (the user's choice stands: a second occurrence would
    replace it), nor when a JAX backend already runs (it read ``XLA_FLAGS`` when it started; warns).

    Raises:
        ConfigError: :data:`OPT_OUT_ENV` holds something other than ``on`` or ``off``.
    """
    xla_flags = os.environ.get("XLA_FLAGS", "")
    if cpu_backend_opted_out() or "xla_backend_extra_options" in xla_flags:
        return False
    if jax_backend_started():
        warnings.warn("JAX already runs, so its CPU compiler keeps the options it started with "
                      f"(call configure_cpu_backend before any JAX computation to add {CPU_BACKEND_EXTRA_OPTIONS})",
                      stacklevel=2)
        return False
    os.environ["XLA_FLAGS"] = f"{xla_flags} --xla_backend_extra_options={','.join(CPU_BACKEND_EXTRA_OPTIONS)}".strip()
    return True


def jit_train_step(step: Callable[..., Any], *, platform: str | None = None) -> Callable[..., Any]:
    """``jax.jit`` of a train step (state donated) with the compiler options of ``platform``.

    ``platform`` (``"cpu"``, ``"gpu"``, ...) is where the step runs; JAX's default backend when None.
    """
    options = TRAIN_STEP_COMPILER_OPTIONS.get(platform or jax.default_backend(), {})
    return jax.jit(step, donate_argnums=0, compiler_options=options)

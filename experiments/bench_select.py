"""Benchmark the exact pruning selection (``mann_jax.pruning.scoring.lowest_k``) per radix width.

  python -m experiments.bench_select [--models 1] [--n 5550000]

Times the mask of the ``k`` lowest of ``--n`` scores (default: the 8x512 model's 5.55 M expert
weights), for ``--models`` models vmapped (a sweep's levels), with 1, 2, 4, 8 and 16 bits fixed
per pass, on this machine's default device. :data:`~mann_jax.pruning.scoring.RADIX_BITS` picks the
width per backend from these figures. Last line: JSON with every figure.
"""

from __future__ import annotations

import functools
import json
import time

from absl import app, flags

_MODELS = flags.DEFINE_integer("models", 1, "Models (levels) selected at once, vmapped.")
_N = flags.DEFINE_integer("n", 5_550_000, "Scores per model.")
_BITS = flags.DEFINE_list("bits", ["1", "2", "4", "8", "16"], "Radix widths to time.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed calls per width (min taken).")


def main(argv: list[str]) -> None:
    del argv
    import jax
    import jax.numpy as jnp
    import numpy as np

    from mann_jax.pruning.scoring import default_radix_bits, lowest_k

    m, n = _MODELS.value, _N.value
    rng = np.random.default_rng(0)
    scores = jnp.asarray(np.abs(rng.normal(size=(m, n))).astype(np.float32))
    k = jnp.asarray(np.linspace(0.1, 0.9, m) * n, jnp.int32)
    device = jax.devices()[0].device_kind
    report = {"device": device, "models": m, "n": n, "default_bits": default_radix_bits(), "ms": {}}
    for bits in map(int, _BITS.value):
        fn = jax.jit(jax.vmap(functools.partial(lowest_k, bits=bits, axis_name="models"), axis_name="models"))
        mask = fn(scores, k).block_until_ready()
        assert np.array_equal(np.asarray(mask).sum(axis=1), np.asarray(k)), "wrong count"
        times = []
        for _ in range(_REPEATS.value):
            start = time.perf_counter()
            fn(scores, k).block_until_ready()
            times.append(time.perf_counter() - start)
        report["ms"][bits] = round(1e3 * min(times), 3)
        print(f"{bits} bit(s) per pass: {report['ms'][bits]:9.2f} ms for {m} x {n:,} scores ({device})")
    print(json.dumps(report))


if __name__ == "__main__":
    app.run(main)

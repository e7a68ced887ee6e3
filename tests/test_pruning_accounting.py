"""Parameter / size / FLOP accounting: hand-computed tiny trees, closed forms, the study's Table 1."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from flax import nnx

from mann_jax.model import MANN
from mann_jax.pruning import accounting as acc

K = 8  # default experts
P = 480 * 512 + 512 * 512 + 512 * 363  # entries of one blended network: 693,760
N = K * P  # expert weights: 5,550,080
OUT = 512 + 512 + 363  # expert outputs per frame
GATING_MACS = 19 * 32 + 32 * 32 + 32 * 8  # 1,888


def _tiny() -> tuple[dict[str, Any], dict[str, Any]]:
    """2 experts, 3 -> 4 -> 4 -> 2, gating 2 -> 3 -> 3 -> 2; all weights 1, and a hand-made mask.

    Pruned: layer0 expert 0 row 0 (4), all of layer1 expert 1 (16), layer2 entry (0, 0) of both
    experts (2), plus a weight that is itself 0 (layer2 expert 0 entry (3, 1)). One bias non-zero.
    """
    params = {
        "gating": {
            "layer0": {"kernel": np.ones((2, 3), np.float32), "bias": np.zeros(3, np.float32)},
            "layer1": {"kernel": np.ones((3, 3), np.float32), "bias": np.zeros(3, np.float32)},
            "layer2": {"kernel": np.ones((3, 2), np.float32), "bias": np.zeros(2, np.float32)},
        },
        "layer0": {"alpha": np.ones((2, 3, 4), np.float32), "beta": np.zeros((2, 4), np.float32)},
        "layer1": {"alpha": np.ones((2, 4, 4), np.float32), "beta": np.zeros((2, 4), np.float32)},
        "layer2": {"alpha": np.ones((2, 4, 2), np.float32), "beta": np.zeros((2, 2), np.float32)},
    }
    params["layer0"]["beta"][0, 0] = 0.5
    params["layer2"]["alpha"][0, 3, 1] = 0.0
    m0 = np.ones((2, 3, 4), bool)
    m0[0, 0, :] = False
    m1 = np.ones((2, 4, 4), bool)
    m1[1] = False
    m2 = np.ones((2, 4, 2), np.float32)  # float masks work too
    m2[:, 0, 0] = 0.0
    masks = {"layer0": {"alpha": m0}, "layer1": {"alpha": m1, "beta": None}, "layer2": {"alpha": m2}}
    return params, masks


def test_tiny_nonzero_counts_by_hand() -> None:
    params, masks = _tiny()
    c = acc.nonzero_counts(params, masks)
    assert c.per_leaf["layer0/alpha"] == 24 - 4
    assert c.per_leaf["layer1/alpha"] == 32 - 16
    assert c.per_leaf["layer2/alpha"] == 16 - 2 - 1
    assert (c.expert_weights, c.expert_biases, c.gating) == (49, 1, 6 + 9 + 6)
    assert c.total == 49 + 1 + 21
    assert c.dense_total == 72 + 8 + 8 + 4 + 21 + 8
    assert c.expert_weight_sparsity == pytest.approx(23 / 72)
    assert acc.nonzero_counts(params).expert_weights == 71  # unmasked: only the zero weight


def test_tiny_sizes_by_hand() -> None:
    params, masks = _tiny()
    assert acc.model_size_mb(params, masks) == pytest.approx(71 * 32 / 1e6)
    assert acc.model_size_mb(params, masks, include="expert_weights") == pytest.approx(49 * 32 / 1e6)
    # CSR: 64 bits per non-zero (value + int32 column), 32 per row pointer (rows + 1 per matrix).
    pointers = (3 + 2 + 4 + 2 + 4 + 2) + 2 * 4 + 3 + 2 * 5 + 3 + 2 * 5 + 3
    assert acc.csr_size_mb(params, masks) == pytest.approx((64 * 71 + 32 * pointers) / 1e6)


def test_tiny_flops_by_hand() -> None:
    params, masks = _tiny()
    gating = 21 + 0 + (3 + 3) + (3 * 2 - 1)  # MACs, zero biases, ELU, softmax
    blend = acc.flops_per_frame(params, masks)
    assert blend.gating == gating
    assert blend.expert_weights == pytest.approx(1.5 * (20 + 16 + 13))  # (2K-1)/K per non-zero
    assert blend.matvec == 12 + 16 + 8
    assert blend.expert_biases == 2 * 1
    assert blend.activations == 4 + 4
    assert blend.total == pytest.approx(151.5)
    support = acc.flops_per_frame(params, masks, blended_matvec="support")
    assert support.matvec == 12 + 16 + 7  # (0, 0) of layer2 is pruned in both experts
    mix = acc.flops_per_frame(params, masks, formulation="mix")
    assert (mix.expert_weights, mix.matvec, mix.expert_biases) == (49, 0, 1)
    assert mix.mixing == 3 * (4 + 4 + 2)
    assert mix.total == gating + 49 + 1 + 30 + 8
    two = acc.flops_per_frame(params, masks, flops_per_mac=2)
    assert two.total == pytest.approx(151.5 + 21 + 36)


def test_masks_are_checked() -> None:
    params, _ = _tiny()
    with pytest.raises(ValueError, match="shape"):
        acc.nonzero_counts(params, {"layer0": {"alpha": np.ones((2, 4, 3))}})
    with pytest.raises(ValueError, match="do not have"):
        acc.nonzero_counts(params, {"layer9": {"alpha": np.ones(1)}})


def test_global_magnitude_masks_exact_and_global() -> None:
    params, _ = _tiny()
    rng = np.random.default_rng(0)
    for i in range(3):
        a = params[f"layer{i}"]["alpha"]
        params[f"layer{i}"]["alpha"] = (rng.permutation(a.size).reshape(a.shape) - 30.0).astype(np.float32)
    flat = np.concatenate([np.abs(params[f"layer{i}"]["alpha"]).ravel() for i in range(3)])
    for s, m in zip((0.0, 0.25, 0.5, 1.0), acc.global_magnitude_masks(params, (0.0, 0.25, 0.5, 1.0))):
        kept = np.concatenate([m[f"layer{i}"]["alpha"].ravel() for i in range(3)])
        assert (~kept).sum() == round(s * 72)
        if 0 < s < 1:
            assert flat[~kept].max() <= flat[kept].min()  # one ranking over all three layers
        assert m["gating"]["layer0"]["kernel"].all() and m["layer0"]["beta"].all()


def test_closed_form_dense_default_shapes() -> None:
    shapes = {"gating/layer0": (19, 32), "gating/layer1": (32, 32), "gating/layer2": (32, 8)}
    params: dict[str, Any] = {"gating": {}}
    for path, (i, o) in shapes.items():
        params["gating"][path.split("/")[1]] = {"kernel": np.ones((i, o), np.float32),
                                                "bias": np.ones(o, np.float32)}
    for l, (i, o) in enumerate(((480, 512), (512, 512), (512, 363))):
        params[f"layer{l}"] = {"alpha": np.ones((K, i, o), np.float32), "beta": np.ones((K, o), np.float32)}
    common = GATING_MACS + 72 + 64 + (3 * K - 1) + 1024  # gating MACs, biases, ELU, softmax; expert ELU
    blend = acc.flops_per_frame(params)
    assert blend.total == pytest.approx((2 * K - 1) * P + P + 2 * K * OUT + common)
    mix = acc.flops_per_frame(params, formulation="mix")
    assert mix.total == pytest.approx(K * P + K * OUT + (2 * K - 1) * OUT + common)
    assert acc.model_size_mb(params) == pytest.approx((N + K * OUT + GATING_MACS + 72) * 32 / 1e6)
    assert acc.model_size_mb(params, include="expert_weights") == pytest.approx(177.60256)
    # Zero biases (as initialised): the study's 11.10 MFLOPs.
    for leaf in [params["gating"][f"layer{i}"] for i in range(3)] + [params[f"layer{i}"] for i in range(3)]:
        leaf["bias" if "bias" in leaf else "beta"][...] = 0
    assert acc.flops_per_frame(params).total == (2 * K - 1) * P + P + GATING_MACS + 64 + 23 + 1024
    assert round(acc.flops_per_frame(params).mflops, 2) == 11.10


def test_works_on_a_real_model_tree() -> None:
    model = MANN(input_size=24, output_size=10, hidden_sizes=(16, 12), n_experts=4,
                 gating_indices=(0, 3, 5, 7, 20), gating_hidden=6, rngs=nnx.Rngs(0))
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    c = acc.nonzero_counts(params)
    assert c.expert_biases == 0 and c.gating == 5 * 6 + 6 * 6 + 6 * 4
    p_blend = 24 * 16 + 16 * 12 + 12 * 10
    f = acc.flops_per_frame(params)
    gating = 5 * 6 + 6 * 6 + 6 * 4 + 12 + (3 * 4 - 1)
    assert f.total == pytest.approx(7 / 4 * c.expert_weights + p_blend + gating + 16 + 12)


@pytest.fixture(scope="module")
def default_params() -> dict[str, Any]:
    return acc.default_params()


@pytest.fixture(scope="module")
def table(default_params: dict[str, Any]) -> list[acc.Table1Row]:
    return acc.table1(params=default_params)


def test_table1_matches_the_study(table: list[acc.Table1Row]) -> None:
    assert [r.sparsity for r in table] == list(acc.STUDY_SPARSITIES)
    for r in table:
        assert abs(r.size_rel_diff) <= 0.03, r
        assert abs(r.mflops_rel_diff) <= 0.03, r
        assert abs(r.mflops_rel_diff) <= 0.005, r  # in fact every row within 0.2 %


def test_table1_counts_exact_and_monotone(
    table: list[acc.Table1Row], default_params: dict[str, Any]
) -> None:
    zeros_at_init = sum(int(np.sum(default_params[f"layer{i}"]["alpha"] == 0)) for i in range(3))
    for r in table:
        assert r.nonzero_expert_weights == N - max(round(r.sparsity * N), zeros_at_init)
        assert r.nonzero == r.nonzero_expert_weights + GATING_MACS  # biases start at zero
        assert r.size_mb == pytest.approx(r.nonzero * 32 / 1e6)
    for a, b in zip(table, table[1:]):
        assert b.mflops < a.mflops and b.mflops_mix < a.mflops_mix
        assert b.mflops_blend_support <= a.mflops_blend_support
        assert b.size_mb < a.size_mb and b.csr_size_mb < a.csr_size_mb


def _numpy_global_magnitude_masks(params: dict[str, Any], s: float) -> dict[str, np.ndarray]:
    """Independent reference (the former numpy implementation): stable argsort of |w| over the
    expert weights in layer order, the round(s·N) smallest (ties: lower flat index) pruned."""
    names = sorted((k for k in params if k.startswith("layer")), key=lambda k: int(k[5:]))
    w = [np.abs(np.asarray(params[k]["alpha"], np.float32)) for k in names]
    n = sum(a.size for a in w)
    keep = np.ones(n, bool)
    keep[np.argsort(np.concatenate([a.ravel() for a in w]), kind="stable")[: int(round(s * n))]] = False
    bounds = np.cumsum([0] + [a.size for a in w])
    return {k: keep[a:b].reshape(x.shape) for k, a, b, x in zip(names, bounds[:-1], bounds[1:], w)}


def test_global_magnitude_masks_are_trainings_and_match_a_numpy_reference_on_the_default_model(
    default_params: dict[str, Any]
) -> None:
    levels = (0.0, 0.1, 0.25, 0.5, 0.9, 0.95, 1.0)
    for s, m in zip(levels, acc.global_magnitude_masks(default_params, levels)):
        want = _numpy_global_magnitude_masks(default_params, s)
        for k, kept in want.items():
            np.testing.assert_array_equal(m[k]["alpha"], kept, err_msg=f"{k} at {s}")
            assert m[k]["beta"].shape == default_params[k]["beta"].shape and m[k]["beta"].all()
        assert all(np.asarray(v["kernel"]).all() for v in m["gating"].values())
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        acc.global_magnitude_masks(default_params, [1.5])


def test_global_magnitude_masks_run_trainings_mask_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    # No second implementation of the ranking: the accounting masks come from the function every
    # unstructured mask update of prune() runs (replace it and the accounting masks follow).
    from mann_jax.pruning import masks as pm

    calls = []

    def keep_all(scores, masks, sparsity, *, scope="global", axis_name=None):
        calls.append(scope)
        return [np.ones(np.shape(s), bool) for s in scores]

    monkeypatch.setattr(pm, "unstructured_masks", keep_all)
    params, _ = _tiny()
    (m,) = acc.global_magnitude_masks(params, [0.5])
    assert calls == ["global"]
    assert all(m[f"layer{i}"]["alpha"].all() for i in range(3))


def test_table1_takes_given_masks() -> None:
    params, masks = _tiny()
    rows = acc.table1([0.0, 0.9], params=params, masks=[{}, masks])
    assert rows[0].nonzero == 71 + 1 + 21 and rows[1].nonzero == 71
    assert rows[1].study_mflops == 1.74 and rows[1].mflops == pytest.approx(151.5e-6)
    with pytest.raises(ValueError, match="mask trees"):
        acc.table1([0.0], params=params, masks=[{}, {}])

"""Tests of genrobust.measure.generate: seed normals (exact covariance, seeded, global RNG untouched), counterfactual sources
and targets, targeted PGD on both classifier kinds (only sub-model t runs; the target's score rises; mode kept),
the prefix chain of PGD configurations, an end-to-end generate() on tiny models, and the Tab. 2 record / conclusion.
No Inception here (tests/test_fid.py; notebook 04 runs the whole path). A few seconds on one CPU thread."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genrobust import data as gdata
from genrobust.measure import generate as G
from genrobust.reporting import tables
from genrobust.core.config import ConfigError, GenConfig
from genrobust.core.fold import folded_copy
from genrobust.core.models import GenerativeClassifier, create_model
from genrobust.measure import claims, fid
from genrobust.store.units import UnitStore, UnitWarning

K = 10


@pytest.fixture(scope="module")
def tiny_data():
    s = gdata.make_synthetic(12, 6, seed=1)
    return SimpleNamespace(train_x=s.train_x, train_y=s.train_y, val_x=s.train_x[:0], val_y=s.train_y[:0],
                           test_x=s.test_x, test_y=s.test_y, source=s.source.describe())


@pytest.fixture(scope="module")
def classifiers():
    with torch.random.fork_rng():  # seeded model init without leaving the global RNG changed
        torch.manual_seed(0)
        gen = GenerativeClassifier([create_model("small_cnn", 1, 0.25) for _ in range(K)]).eval()
        soft = create_model("small_cnn", K, 0.5).eval()
    return {"generative": gen, "softmax": soft}


# ---------------------------------------------------------------------------------------------------------------
# Seeds
def test_class_gaussian_sampler_has_the_fitted_covariance():
    x = torch.randint(0, 256, (6, 1, 2, 2), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    cg = G.ClassGaussian(x, ridge=1e-3)
    xf = x.reshape(6, -1).double() / 255
    expected = torch.cov(xf.T, correction=0) + 1e-3 * torch.eye(4, dtype=torch.float64)
    assert torch.allclose(cg.covariance(), expected, atol=1e-12)
    s = cg.sample(200_000, torch.Generator().manual_seed(1))
    assert torch.allclose(s.mean(0), xf.mean(0), atol=5e-3)
    assert torch.allclose(torch.cov(s.T), expected, atol=3e-3)
    torch.linalg.cholesky(cg.covariance())  # positive definite thanks to the ridge, though n - 1 < D


def test_sample_seeds_seeded_clipped_and_rng_free(tiny_data):
    state = torch.get_rng_state()
    counts = G.class_counts(23)
    assert counts == [3, 3, 3, 2, 2, 2, 2, 2, 2, 2] and sum(counts) == 23
    s1, y1 = G.sample_seeds(tiny_data.train_x, tiny_data.train_y, counts, generator=torch.Generator().manual_seed(0))
    s2, y2 = G.sample_seeds(tiny_data.train_x, tiny_data.train_y, counts, generator=torch.Generator().manual_seed(0))
    s3, _ = G.sample_seeds(tiny_data.train_x, tiny_data.train_y, counts, generator=torch.Generator().manual_seed(1))
    assert torch.equal(torch.get_rng_state(), state)
    assert s1.shape == (23, 3, 32, 32) and s1.dtype == torch.float32
    assert s1.min() >= 0 and s1.max() <= 1
    assert torch.equal(s1, s2) and not torch.equal(s1, s3)
    assert torch.equal(y1, torch.repeat_interleave(torch.arange(K), torch.tensor(counts)))
    # class-conditional: each class's seeds are closer to its own mean image than to the others'
    means = torch.stack([tiny_data.train_x[tiny_data.train_y == k].float().mean(0) / 255 for k in range(K)])
    d = torch.cdist(s1.flatten(1), means.flatten(1))
    assert (d.argmin(1) == y1).float().mean() > 0.9


# ---------------------------------------------------------------------------------------------------------------
# Counterfactual sources and targets
def test_counterfactual_targets():
    y = torch.arange(K).repeat(200)
    t = G.counterfactual_targets(y, rule="random", seed=0)
    assert (t != y).all() and t.min() >= 0 and t.max() < K
    assert torch.equal(t, G.counterfactual_targets(y, rule="random", seed=0))
    assert set(t[y == 0].tolist()) == set(range(1, K))       # every other class is used
    assert torch.equal(G.counterfactual_targets(y, rule="next"), (y + 1) % K)
    with pytest.raises(ValueError, match="choose one of"):
        G.counterfactual_targets(y, rule="runner_up")


def test_counterfactual_sources_balanced(tiny_data):
    idx = G.counterfactual_sources(tiny_data.test_y, 25, seed=0)
    assert len(idx) == len(set(idx.tolist())) == 25
    assert torch.bincount(tiny_data.test_y[idx], minlength=K).tolist() == G.class_counts(25)
    with pytest.raises(ValueError, match="lower gen.n_counterfactuals"):
        G.counterfactual_sources(tiny_data.test_y, 100, seed=0)


# ---------------------------------------------------------------------------------------------------------------
# Targeted PGD
def test_generative_pgd_runs_only_the_target_submodel_and_raises_d_t(classifiers, tiny_data):
    gen = classifiers["generative"]
    x = gdata.to_float(tiny_data.test_x[:8])
    target = torch.tensor([2, 2, 5, 5, 5, 7, 2, 7])
    calls = [0] * K
    hooks = [m.register_forward_hook(lambda *a, k=k: calls.__setitem__(k, calls[k] + 1))
             for k, m in enumerate(gen.models)]
    gen.train()
    try:
        x_adv = G.targeted_pgd(gen, x, target, eps=3.0, steps=4, step_size=0.2)
    finally:
        for h in hooks:
            h.remove()
    assert gen.training and all(m.training for m in gen.modules())   # mode restored
    gen.eval()
    assert [k for k in range(K) if calls[k]] == [2, 5, 7]
    assert ((x_adv - x).flatten(1).norm(dim=1) <= 3.0 + 1e-5).all() and x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        before = gen.logits_for(x, target)
        after = gen.logits_for(x_adv, target)
    assert (after > before).all()


def test_softmax_pgd_lowers_cross_entropy_to_target(classifiers, tiny_data):
    soft = classifiers["softmax"]
    x = gdata.to_float(tiny_data.test_x[:8])
    target = (tiny_data.test_y[:8] + 3) % K
    x_adv = G.targeted_pgd(soft, x, target, eps=3.0, steps=4, step_size=0.2)
    with torch.no_grad():
        ce = lambda z: F.cross_entropy(soft(z), target, reduction="none")  # noqa: E731
        assert (ce(x_adv) < ce(x)).all()


@pytest.mark.parametrize("name", ["generative", "softmax"])
def test_prefix_chain_equals_separate_runs(classifiers, tiny_data, name):
    model = classifiers[name]
    x = gdata.to_float(tiny_data.test_x[:6])
    target = (tiny_data.test_y[:6] + 1) % K
    runs = G.pgd_runs(model, x, target, [(5, 0.5), (3, 0.5)], eps=10.0)       # 5 x 0.5 <= 10: chained
    assert set(runs) == {(3, 0.5), (5, 0.5)}
    direct = G.targeted_pgd(model, x, target, eps=10.0, steps=5, step_size=0.5)
    assert torch.allclose(runs[(5, 0.5)], direct, atol=1e-4)
    assert torch.allclose(runs[(3, 0.5)], G.targeted_pgd(model, x, target, eps=10.0, steps=3, step_size=0.5), atol=1e-6)
    # a binding ball: separate runs, each inside its eps-ball
    small = G.pgd_runs(model, x, target, [(5, 0.5), (3, 0.5)], eps=1.0)
    assert all(((v - x).flatten(1).norm(dim=1) <= 1.0 + 1e-5).all() for v in small.values())


# ---------------------------------------------------------------------------------------------------------------
# End to end (no Inception) and the record
def test_generate_end_to_end(classifiers, tiny_data):
    gen_cfg = GenConfig(n_samples=12, eps=10.0, pgd_configs=((2, 1.0), (3, 1.0)), batch_size=5)
    out = G.generate(gen_cfg, tiny_data, classifiers, progress=False)
    again = G.generate(gen_cfg, tiny_data, classifiers, progress=False)
    assert out.chained
    assert out.seeds.shape == (12, 3, 32, 32) and out.originals.dtype == torch.uint8
    assert (out.cf_target != out.original_y).all()
    assert set(out.images) == {(kind, name, pgd) for kind in G.KINDS for name in classifiers
                               for pgd in ((2, 1.0), (3, 1.0))}
    for key, x in out.images.items():
        assert torch.equal(x, again.images[key])          # deterministic
        assert x.shape == (12, 3, 32, 32) and x.min() >= 0 and x.max() <= 1
    assert len(out.checks) == 8 and all(0 <= c["target_rate"] <= 1 and c["max_l2"] <= 3.0 + 1e-4
                                        for c in out.checks)
    panels = G.figure_panels(out, "counterfactuals", (3, 1.0))
    assert list(panels) == ["test images (other classes)", "generative classifier", "softmax classifier"]
    order = G.round_robin_order(out.cf_target, out.original_y)
    assert sorted(order.tolist()) == list(range(12))  # a permutation, applied to every panel alike
    assert all(torch.equal(rows, out.cf_target[order]) for _, rows in panels.values())
    assert torch.equal(panels["generative classifier"][0], out.images[("counterfactuals", "generative", (3, 1.0))][order])


def _units(tmp_path, name="units"):
    return G.GenUnits(UnitStore(tmp_path / name), {"generative": "g" * 16, "softmax": "s" * 16}, {"data": "tiny"})


def test_generation_from_units_equals_in_memory_and_the_whole_set_at_once(classifiers, tiny_data, tmp_path):
    gen_cfg = GenConfig(n_samples=12, eps=10.0, pgd_configs=((2, 1.0), (3, 1.0)), batch_size=5)
    memory = G.generate(gen_cfg, tiny_data, classifiers, progress=False)
    stored = G.generate(gen_cfg, tiny_data, classifiers, progress=False, units=_units(tmp_path))
    assert len(list((tmp_path / "units").glob("*.pt"))) == 2 * 2 * 3  # classifier x kind x 3 batches of <= 5
    again = G.generate(gen_cfg, tiny_data, classifiers, progress=False, units=_units(tmp_path))  # all read back
    for key, x in memory.images.items():
        assert torch.equal(x, stored.images[key]) and torch.equal(x, again.images[key]), key
    assert memory.checks == stored.checks == again.checks
    # the pre-units computation: every starting image in one call, float images, float32 means
    works = {n: folded_copy(m) for n, m in classifiers.items()}
    starts = {"samples": (memory.seeds, memory.seed_y),
              "counterfactuals": (memory.originals.float() / 255, memory.cf_target)}
    whole = GenConfig(n_samples=12, eps=10.0, pgd_configs=((2, 1.0), (3, 1.0)), batch_size=12)
    for c in memory.checks:
        x0, t = starts[c["kind"]]
        runs = G.pgd_runs(works[c["classifier"]], x0, t, whole.pgd_configs, eps=whole.eps, batch_size=5)
        x = runs[(c["steps"], c["step_size"])]
        assert torch.equal(fid.quantize(x).float() / 255, memory.images[(c["kind"], c["classifier"],
                                                                          (c["steps"], c["step_size"]))])
        with torch.no_grad():
            hit = (works[c["classifier"]](x).argmax(1) == t).float().mean().item()
        assert c["target_rate"] == pytest.approx(hit, abs=1e-6)  # exact fraction now, float32 mean before
        assert c["mean_l2"] == pytest.approx((x - x0).flatten(1).norm(dim=1).mean().item(), rel=1e-5)


def test_a_corrupt_generation_unit_is_recomputed(classifiers, tiny_data, tmp_path):
    gen_cfg = GenConfig(n_samples=6, eps=10.0, pgd_configs=((2, 1.0),), batch_size=3)
    first = G.generate(gen_cfg, tiny_data, classifiers, progress=False, units=_units(tmp_path))
    victim = sorted((tmp_path / "units").glob("*.pt"))[0]
    victim.write_bytes(victim.read_bytes()[:100])
    with pytest.warns(UnitWarning, match="corrupt"):
        again = G.generate(gen_cfg, tiny_data, classifiers, progress=False, units=_units(tmp_path))
    assert all(torch.equal(x, again.images[k]) for k, x in first.images.items())


def test_round_robin_order_cycles_source_classes():
    rows = torch.tensor([5, 5, 5, 5, 5, 5, 2, 2])
    groups = torch.tensor([0, 0, 0, 1, 1, 3, 0, 0])   # class-major, as the counterfactual sources are stored
    order = G.round_robin_order(rows, groups)
    first_of_row_5 = [int(groups[i]) for i in order if rows[i] == 5][:3]
    assert first_of_row_5 == [0, 1, 3]                 # one of each source class before any repeat
    assert [int(groups[i]) for i in order if rows[i] == 5] == [0, 1, 3, 0, 1, 0]


def _fake_record(gen_fids, soft_fids, n=2050, synthetic=False):
    generated = G.Generated(torch.zeros(1), torch.zeros(1), torch.zeros(1), torch.zeros(1), torch.zeros(1),
                            seconds={"seeds": 0.0}, chained=True)
    cells = []
    for (kind, steps), g, s in zip([(k, st) for st in (7, 10) for k in G.KINDS], gen_fids, soft_fids):
        for name, v in (("generative", g), ("softmax", s)):
            cells.append({"kind": kind, "classifier": name, "steps": steps, "step_size": 1.0, "fid": v, "n": n,
                          "n_reference": 10000, "full_rank": n > 2048})
            generated.checks.append({"kind": kind, "classifier": name, "steps": steps, "step_size": 1.0,
                                     "target_rate": 0.9, "mean_p_target": 0.8, "mean_l2": 5.0, "max_l2": 7.0})
    scored = {"cells": cells, "anchor": {"what": "FID(test, train)", "fid": 12.0, "n": n, "n_reference": 10000,
                                         "full_rank": n > 2048},
              "reference": {"n": 10000, "of": 50000}, "inception": {}, "seconds": 1.0}
    return G.tab2_record(GenConfig(n_samples=n, n_reference=10000), generated, scored, synthetic=synthetic)


def test_tab2_record_table_and_conclusion():
    rec = _fake_record([50.0, 40.0, 70.0, 45.0], [60.0, 41.0, 65.0, 50.0])
    table = tables.tab2(rec)
    assert list(table.columns) == ["samples (ours)", "samples (paper)", "counterfactuals (ours)",
                                   "counterfactuals (paper)", "N"]
    assert table.loc[("L2 PGD, 7 steps, step size 1", "generative"), "samples (paper)"] == 50.38
    assert table.loc[("L2 PGD, 10 steps, step size 1", "softmax"), "counterfactuals (ours)"] == 50.0
    assert all("biased upward" in c["comparable"] for c in rec["cells"])
    assert "No cell has both classifiers" in tables.generation_conclusion(rec, [])
    mixed = dict(rec, n_samples=50000, n_counterfactuals=10000)
    assert "N = 50,000 samples / 10,000 counterfactuals per cell" in tables.generation_conclusion(mixed, [])
    tiny = _fake_record([1, 1, 1, 1], [0, 0, 0, 0], n=20, synthetic=True)
    text = tables.generation_conclusion(tiny, [])
    assert "SYNTHETIC" in text and "singular" in text and "12.0" in text
    rng = np.random.default_rng(0)   # replicates whose spread gives SE 1 at m = n / 2: -5 decided, +0.5 not
    boot = [{"kind": kind, "steps": 7, "step_size": 1.0, "diff": diff, "n": 2050, "m": 1025,
             "replicates": list(diff + rng.standard_normal(1000))}
            for kind, diff in (("samples", -5.0), ("counterfactuals", 0.5))]
    verdicts = [v.to_dict() for v in claims.generation_verdicts(boot)]
    text = tables.generation_conclusion(rec, verdicts)
    assert "samples, 7 x 1: **supported**" in text and "counterfactuals, 7 x 1: **not established**" in text
    assert "Ours: **mixed** (1 supported, 1 not established)" in text


def test_gen_config_validation():
    with pytest.raises(ConfigError, match="pgd_configs"):
        GenConfig(pgd_configs=((0, 1.0),))
    with pytest.raises(ConfigError, match="cf_target"):
        GenConfig(cf_target="runner_up")
    with pytest.raises(ConfigError, match="inception"):
        GenConfig(inception="hub")

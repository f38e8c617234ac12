"""Fused K-model training (genrobust.training.fused) against the sequential reference: the objective code of
genrobust.core.objectives run model by model, with torch.optim.SGD per model and torch's LambdaLR over
training.loop.lr_factor (the reference of each run's scheduled lr, loop.scheduled_lr); and the training step
(steppers.BinaryStepper.step) against the same reference."""
import copy
import dataclasses
import os
import types

import pytest
import torch

from genrobust.training import fused as gf
from genrobust.core import objectives, scoring
from genrobust.training import loop, steppers
from genrobust.core.config import TrainConfig, get_profile
from genrobust.core.models import create_model

K, N = 3, 4  # 3 models, 4 positives + 4 negatives each (batch 8)
TOL = 1e-5
# The equivalence tests run on the CPU in CI; GENROBUST_TEST_DEVICE=cuda runs them on a GPU (with TF32 off: they
# check that fused and sequential compute the same arithmetic, not TF32's 10-bit rounding of either).
DEVICE = torch.device(os.environ.get("GENROBUST_TEST_DEVICE", "cpu"))


@pytest.fixture
def on_device():
    if DEVICE.type != "cuda":
        yield DEVICE
        return
    prev = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield DEVICE
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = prev


def _models(name, width, dtype=torch.float64):
    out = []
    for k in range(K):
        torch.manual_seed(100 + k)  # different weights per model: a mix-up of models is visible
        out.append(create_model(name, 1, width).to(dtype).train())
    return out


def _batches(seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(K, 2 * N, 3, 32, 32, generator=g, dtype=dtype)
    return x[:, :N], x[:, N:]  # x_pos, x_neg: (K, N, 3, 32, 32)


def _cfg(objective):
    # classes 0..2 with a per-class lr (as the paper's 0.05 for classes 0, 1, 6) and the step schedule's drop
    return TrainConfig(objective=objective, eps=0.3, eps1=0.3, attack_steps=2, lr=0.1, lr_overrides=((1, 0.05),),
                       lr_schedule="step", lr_drop_epoch=1, lr_drop_to=0.01, momentum=0.9, weight_decay=1e-4)


def _sgd(m, cfg, k):
    return torch.optim.SGD(m.parameters(), lr=cfg.lr_for(k), momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def _lambda_lr(opt, cfg, k, steps):
    """torch's LambdaLR over loop.lr_factor (``steps`` epochs of one step): the reference schedule."""
    ratio = cfg.lr_drop_to / cfg.lr_for(k)
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: loop.lr_factor(cfg.lr_schedule, s, steps, 1, cfg.lr_drop_epoch, ratio))


def _lrs(cfg, step, steps, classes=range(K)):
    """Each class's scheduled lr at ``step`` of ``steps`` (one step per epoch), as the steppers set it."""
    return [loop.scheduled_lr(cfg, cfg.lr_for(k), step, steps, 1) for k in classes]


def _sequential(models, x_pos, x_neg, cfg, steps):
    """The reference: each model alone, objective + backward + SGD with LambdaLR's lr (1 step per epoch)."""
    losses, grads = [], []
    for k, m in enumerate(models):
        opt = _sgd(m, cfg, k)
        sched = _lambda_lr(opt, cfg, k, steps)
        for _ in range(steps):
            loss, _ = objectives.binary_loss(m, x_pos[k:k + 1], x_neg[k:k + 1], cfg, torch.Generator().manual_seed(0))
            loss = loss.sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if len(losses) == k:  # first step's loss and gradients
                losses.append(loss.detach())
                grads.append({n: p.grad.clone() for n, p in m.named_parameters()})
            opt.step()
            sched.step()
    return torch.stack(losses), grads


def _fused(fm, x_pos, x_neg, cfg, steps):
    opt = gf.FusedSGD(fm.parameters(), lrs=_lrs(cfg, 0, steps), momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    first = None
    for s in range(steps):
        opt.set_lrs(_lrs(cfg, s, steps))
        fm.train()
        loss_k, stats = objectives.binary_loss(fm, x_pos, x_neg, cfg, torch.Generator().manual_seed(0))
        loss = loss_k.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if first is None:
            first = (loss.detach(), stats, {n: getattr(fm, gf._mangle(n)).grad.clone() for n in fm._param_names})
        opt.step()
    return first


@pytest.mark.parametrize("name,width,objective,dtype,steps", [
    ("small_cnn", 0.5, "out", torch.float64, 2), ("small_cnn", 0.5, "combined", torch.float64, 2),
    ("resnet18", 0.125, "out", torch.float64, 2), ("resnet18", 0.125, "combined", torch.float64, 2),
    # the training dtype: after one step the largest difference is ~1e-6; a second step amplifies float32
    # rounding (batch-8 BN statistics, normalized L2 attack steps) to ~2e-5, so float32 is held to one step
    ("resnet18", 0.125, "out", torch.float32, 1),
])
def test_fused_matches_sequential(name, width, objective, dtype, steps, on_device):
    """Same loss, same per-model parameter gradients, same BN running stats and the same weights after SGD steps
    (momentum, weight decay, per-class lr; with 2 steps also an lr drop) as K separate runs of the objective code."""
    cfg = _cfg(objective)
    models = [m.to(on_device) for m in _models(name, width, dtype)]
    fm = gf.FusedBinaryModels(copy.deepcopy(models))
    x_pos, x_neg = (x.to(on_device) for x in _batches(dtype=dtype))
    ref_loss, ref_grads = _sequential(models, x_pos, x_neg, cfg, steps=steps)
    loss, stats, grads = _fused(fm, x_pos, x_neg, cfg, steps=steps)

    torch.testing.assert_close(loss, ref_loss.sum(), atol=TOL, rtol=0)
    torch.testing.assert_close(stats["loss"], ref_loss, atol=TOL, rtol=0)
    for n in fm._param_names:
        torch.testing.assert_close(grads[n], torch.stack([g[n] for g in ref_grads]), atol=TOL, rtol=0, msg=n)
    # after the steps: weights and every buffer (BN running_mean/var, num_batches_tracked) per model
    for k, m in enumerate(models):
        state = fm.model_state_dict(k)
        assert state.keys() == m.state_dict().keys()
        for n, v in m.state_dict().items():
            torch.testing.assert_close(state[n], v, atol=TOL, rtol=0, msg=f"model {k}: {n}")
    assert [int(v) for n, v in fm.model_state_dict(0).items() if n.endswith("num_batches_tracked")][0] == steps


def test_comparison_detects_a_mixed_up_batch(on_device):
    """Negative control: giving model 0 model 1's negatives changes model 0's gradient far beyond the tolerance
    (so the equality above is not vacuous), and leaves the other models' gradients as they were."""
    cfg = _cfg("out")
    x_pos, x_neg = (x.to(on_device) for x in _batches())
    fm = gf.FusedBinaryModels(_models("small_cnn", 0.5)).to(on_device)
    _, _, grads = _fused(copy.deepcopy(fm), x_pos, x_neg, cfg, steps=1)
    swapped = x_neg.clone()
    swapped[0] = x_neg[1]
    _, _, grads_sw = _fused(copy.deepcopy(fm), x_pos, swapped, cfg, steps=1)
    w = fm._param_names[0]
    assert (grads[w][0] - grads_sw[w][0]).abs().max() > 1e3 * TOL
    torch.testing.assert_close(grads[w][1:], grads_sw[w][1:], atol=1e-12, rtol=0)


def test_attack_leaves_bn_stats_and_mode_alone():
    """perturb_negatives on the fused module: eval-mode attack, buffers restored, train flag restored."""
    fm = gf.FusedBinaryModels(_models("small_cnn", 0.5))
    before = {n: b.clone() for n, b in fm.named_buffers()}
    x_pos, x_neg = _batches()
    rows = x_neg.reshape(K * N, 3, 32, 32)
    x_adv = objectives.perturb_negatives(fm, rows, _cfg("out"), torch.Generator().manual_seed(0))
    assert fm.training and x_adv.shape == (K * N, 3, 32, 32)
    assert (x_adv - rows).flatten(1).norm(dim=1).max() <= 0.3 + 1e-9
    for n, b in fm.named_buffers():
        assert torch.equal(b, before[n]), n


def test_forward_eval_mode_and_state_round_trip():
    models = _models("resnet18", 0.125)
    for m in models:
        m.eval()
    fm = gf.FusedBinaryModels(models).eval()
    x = _batches()[0]
    with torch.no_grad():
        out = fm(x.reshape(K * N, 3, 32, 32)).view(K, N)
        ref = torch.stack([m(x[k])[:, 0] for k, m in enumerate(models)])
    torch.testing.assert_close(out, ref, atol=1e-10, rtol=0)
    fresh = [create_model("resnet18", 1, 0.125).double() for _ in range(K)]
    fm.load_into(fresh)
    for m, f in zip(models, fresh):
        for (n, a), b in zip(m.state_dict().items(), f.state_dict().values()):
            assert torch.equal(a, b), n
    assert "normalize__mean" not in fm.state_dict()  # non-persistent in the single model, so here too


def test_errors():
    with pytest.raises(gf.FusedError, match="differs in architecture"):
        gf.FusedBinaryModels([create_model("small_cnn", 1, 0.5), create_model("small_cnn", 1, 1.0)])
    fm = gf.FusedBinaryModels([create_model("small_cnn", 1, 0.5) for _ in range(2)])
    with pytest.raises(gf.FusedError, match="K \\* n rows"):
        fm(torch.rand(3, 3, 32, 32))
    with pytest.raises(objectives.ObjectiveError, match="x_pos and x_neg"):
        objectives.binary_loss(fm, torch.rand(3, 2, 3, 32, 32), torch.rand(2, 2, 3, 32, 32), _cfg("out"), None)
    with pytest.raises(objectives.ObjectiveError, match="'out' or 'combined'"):
        objectives.binary_loss(fm, torch.rand(2, 2, 3, 32, 32), torch.rand(2, 2, 3, 32, 32),
                               types.SimpleNamespace(objective="softmax"), None)
    with pytest.raises(gf.FusedError, match="expected 2 learning rates, got 3"):
        gf.FusedSGD(fm.parameters(), lrs=[0.1, 0.1]).set_lrs([0.1] * 3)


def test_scheduled_lrs_follow_the_paper_schedule_and_torchs_lambda_lr():
    cfg = get_profile("paper").train  # 0.1 (0.05 for 0, 1, 6) -> 0.01 after epoch 1500
    spe, epochs = 10, 2000
    before = [loop.scheduled_lr(cfg, cfg.lr_for(k), 1500 * spe - 1, epochs, spe) for k in range(10)]
    after = [loop.scheduled_lr(cfg, cfg.lr_for(k), 1500 * spe, epochs, spe) for k in range(10)]
    assert before == pytest.approx([0.05, 0.05, 0.1, 0.1, 0.1, 0.1, 0.05, 0.1, 0.1, 0.1])
    assert after == pytest.approx([0.01] * 10)
    # every step of the test config's schedules, to the bit, as torch's LambdaLR gives them (the engine before it
    # computed the lr itself)
    for schedule in ("step", "onecycle", "cosine"):
        c = dataclasses.replace(_cfg("out"), lr_schedule=schedule)
        opt = _sgd(torch.nn.Linear(1, 1), c, 1)
        sched = _lambda_lr(opt, c, 1, 7)
        for s in range(7):
            assert opt.param_groups[0]["lr"] == _lrs(c, s, 7, [1])[0], (schedule, s)
            opt.step()
            sched.step()


def test_choose_training_path():
    assert gf.choose_training_path("cpu") == "sequential"
    assert gf.choose_training_path("cuda") == "fused"  # the rule; constructing the device needs no GPU


def _memory_runs(models, cfg, steps):
    """Runs of ``models`` (class k = model k) that live in memory only: what the stepper reads of a run."""
    return [loop.TrainingRun(run_dir=None, run_config={}, label=f"d_{k}", model=m,
                             generator=torch.Generator().manual_seed(0), make_batches=None, steps_per_epoch=1,
                             cfg=cfg, base_lr=cfg.lr_for(k), epochs=steps,
                             checkpoint=loop.BestCheckpoint("binary", {})) for k, m in enumerate(models)]


@pytest.mark.parametrize("k", [K, 1])
def test_the_stepper_step_is_one_step_of_the_reference(k):
    """BinaryStepper.step (K = 3 fused, K = 1 the model itself) on uint8 batches: the weights, BN buffers and
    momentum of the reference's steps (objective, backward of the summed losses, SGD at the scheduled lr), to the
    bit, over two steps with an lr drop between them; each run's optimizer state is its own SGD's."""
    cfg = dataclasses.replace(_cfg("out"), channels_last=False)  # the reference's memory format
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (k, 2 * N, 3, 32, 32), generator=g, dtype=torch.uint8)
    x_pos, x_neg = x[:, :N], x[:, N:]
    models = [m.float() for m in _models("small_cnn", 0.5)[:k]]
    runs = _memory_runs(copy.deepcopy(models), cfg, steps=2)
    stepper = steppers.BinaryStepper(runs, cfg, "cpu")
    stepper.train()
    for _ in range(2):
        bad, stats, n = stepper.step([(x_pos[j], x_neg[j]) for j in range(k)], check_now=True)
        assert not bad.any() and n == 2 * N * k and stats["acc"].shape == (k,)
    stepper.sync()
    assert [r.step for r in runs] == [2] * k and [r.lr for r in runs] == _lrs(cfg, 2, 2, range(k))
    ref = gf.FusedBinaryModels(models) if k > 1 else models[0]
    xp, xn = (t.float() / 255 for t in (x_pos, x_neg))
    if k > 1:
        _fused(ref, xp, xn, cfg, steps=2)
        ref_states = [ref.model_state_dict(j) for j in range(k)]
    else:
        _sequential(models, xp, xn, cfg, steps=2)
        ref_states = [models[0].state_dict()]
    for r, state in zip(runs, ref_states):
        for name, v in r.model.state_dict().items():
            assert torch.equal(v, state[name]), (r.label, name)
        assert len(r.optimizer_state["state"]) == len(list(r.model.parameters()))
    # each run's optimizer state loads into its own SGD (the per-class resume) and holds its own momentum
    own = _sgd(runs[-1].model, cfg, k - 1)
    own.load_state_dict(runs[-1].optimizer_state)
    assert all(torch.isfinite(own.state[p]["momentum_buffer"]).all() for p in runs[-1].model.parameters())


def test_the_stepper_comparison_detects_another_lr():
    """Negative control: the same stepper with class 1's base lr changed by 1% ends on other weights than the
    reference's, so the bit-equality above is not vacuous."""
    cfg = dataclasses.replace(_cfg("out"), channels_last=False)  # the reference's memory format
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (K, 2 * N, 3, 32, 32), generator=g, dtype=torch.uint8)
    models = [m.float() for m in _models("small_cnn", 0.5)]
    runs = _memory_runs(copy.deepcopy(models), cfg, steps=1)
    runs[1].base_lr *= 1.01
    stepper = steppers.BinaryStepper(runs, cfg, "cpu")
    stepper.train()
    stepper.step([(x[j, :N], x[j, N:]) for j in range(K)], check_now=True)
    stepper.sync()
    ref = gf.FusedBinaryModels(models)
    _fused(ref, x[:, :N].float() / 255, x[:, N:].float() / 255, cfg, steps=1)
    same = [all(torch.equal(v, ref.model_state_dict(j)[n]) for n, v in r.model.state_dict().items())
            for j, r in enumerate(runs)]
    assert same == [True, False, True]


# ---------------------------------------------------------------------------------------------------------------
# The objective once: the K = 3 step of the fused network equals three single-model steps (objectives.binary_loss
# with K = 1, torch.optim.SGD), in float64 to 1e-9: perturbations, losses, weights and BN statistics.
EXACT = 1e-9


def _recorded_step(monkeypatch, net, opt, x_pos, x_neg, cfg):
    """One step (objectives.binary_loss, backward of the summed losses, opt.step()); returns (loss_k, the
    perturbed images of each inner attack, in order)."""
    seen = []
    real_neg, real_pos = objectives.perturb_negatives, objectives.perturb_positives
    monkeypatch.setattr(objectives, "perturb_negatives", lambda *a: seen.append(real_neg(*a)) or seen[-1])
    monkeypatch.setattr(objectives, "perturb_positives", lambda *a: seen.append(real_pos(*a)) or seen[-1])
    net.train()
    loss_k, _ = objectives.binary_loss(net, x_pos, x_neg, cfg, torch.Generator().manual_seed(0))
    opt.zero_grad(set_to_none=True)
    loss_k.sum().backward()
    opt.step()
    monkeypatch.setattr(objectives, "perturb_negatives", real_neg)
    monkeypatch.setattr(objectives, "perturb_positives", real_pos)
    return loss_k.detach(), [t.detach() for t in seen]


def _step_differences(monkeypatch, models, x_pos, x_neg, cfg, cfg_single=None, single_models=None, steps=2):
    """Largest |fused - single| over ``steps`` steps of the K = 3 fused network (from ``models``) and of the three
    models one by one (from ``single_models``, default the same; config ``cfg_single``, default cfg):
    {'perturbations', 'losses', 'weights'} (weights: every parameter and BN buffer after the steps)."""
    fm = gf.FusedBinaryModels(copy.deepcopy(models))
    fopt = gf.FusedSGD(fm.parameters(), lrs=[cfg.lr_for(k) for k in range(K)], momentum=cfg.momentum,
                       weight_decay=cfg.weight_decay)
    singles = copy.deepcopy(models if single_models is None else single_models)
    opts = [_sgd(m, cfg, k) for k, m in enumerate(singles)]
    diff = {"perturbations": 0.0, "losses": 0.0, "weights": 0.0}
    for _ in range(steps):
        loss_f, adv_f = _recorded_step(monkeypatch, fm, fopt, x_pos, x_neg, cfg)
        for k, (m, o) in enumerate(zip(singles, opts)):
            loss_s, adv_s = _recorded_step(monkeypatch, m, o, x_pos[k:k + 1], x_neg[k:k + 1], cfg_single or cfg)
            diff["losses"] = max(diff["losses"], (loss_f[k] - loss_s[0]).abs().item())
            assert len(adv_f) == len(adv_s) == (2 if cfg.objective == "combined" else 1)
            for a_f, a_s in zip(adv_f, adv_s):  # rows k * N .. (k + 1) * N - 1 are model k's
                diff["perturbations"] = max(diff["perturbations"], (a_f[k * N:(k + 1) * N] - a_s).abs().max().item())
    for k, m in enumerate(singles):
        state = fm.model_state_dict(k)
        for n, v in m.state_dict().items():
            diff["weights"] = max(diff["weights"], (state[n].double() - v.double()).abs().max().item())
    return diff


@pytest.mark.parametrize("objective", ["out", "combined"])
def test_k3_fused_step_equals_three_single_steps_float64(monkeypatch, objective):
    cfg = _cfg(objective)
    models = _models("resnet18", 0.125)
    x_pos, x_neg = _batches()
    diff = _step_differences(monkeypatch, models, x_pos, x_neg, cfg)
    assert max(diff.values()) < EXACT, diff


def test_k3_equivalence_detects_a_perturbed_weight_or_another_eps(monkeypatch):
    """Negative controls: the same comparison fails, by far more than 1e-9, when one single model starts from a
    weight moved by 1e-6, or when the single models attack with eps 0.31 instead of 0.3."""
    cfg = _cfg("out")
    models = _models("resnet18", 0.125)
    x_pos, x_neg = _batches()
    moved = copy.deepcopy(models)
    with torch.no_grad():
        next(moved[1].parameters()).view(-1)[0] += 1e-6
    moved_weight = _step_differences(monkeypatch, models, x_pos, x_neg, cfg, single_models=moved, steps=1)
    assert moved_weight["perturbations"] > 100 * EXACT and moved_weight["weights"] > 100 * EXACT, moved_weight
    other_eps = _step_differences(monkeypatch, models, x_pos, x_neg, cfg,
                                  cfg_single=dataclasses.replace(cfg, eps=0.31), steps=1)
    assert other_eps["perturbations"] > 100 * EXACT and other_eps["weights"] > 100 * EXACT, other_eps


# ---------------------------------------------------------------------------------------------------------------
# Model selection of the K d_k at once on their K-model network (training.steppers.BinaryStepper.select) equals each
# d_k's own selection (the per-class path), in float64: the same images, the same seeded PGD, each d_k scored on its
# own positives vs its own negatives. Unequal set sizes (padding) and chunks of 4 images per model (batching).
SIZES_POS, SIZES_NEG = (6, 9, 5), (7, 9, 4)


def _selection_sets(seed=0):
    g = torch.Generator().manual_seed(seed)
    img = lambda n: torch.rand(n, 3, 32, 32, generator=g, dtype=torch.float64)  # noqa: E731
    return [img(n) for n in SIZES_POS], [img(n) for n in SIZES_NEG]


def _score_differences(per_model, together):
    """Largest |together - per model| over every score, and the smallest |s_pos - s_neg| of the per-model pairs (the
    AUROC only compares positives with negatives: a difference below that gap cannot change it)."""
    diff, gap = 0.0, float("inf")
    for one, both in zip(per_model, together):
        for eps, (s_pos, s_neg) in one.items():
            t_pos, t_neg = both[eps]
            assert t_pos.shape == s_pos.shape and t_neg.shape == s_neg.shape
            diff = max(diff, (t_pos - s_pos).abs().max().item(), (t_neg - s_neg).abs().max().item())
            gap = min(gap, (s_pos[:, None] - s_neg[None, :]).abs().min().item())
    return diff, gap


def test_k3_selection_at_once_equals_three_per_model_selections(on_device):
    models = [m.to(on_device) for m in _models("resnet18", 0.125)]
    fm = gf.FusedBinaryModels(models)
    pos, neg = _selection_sets()
    kw = dict(steps=3, batch_size=4, seed=0, device=on_device)
    per_model = [scoring.binary_auroc_scores(m, p, q, (0.0, 0.3), **kw) for m, p, q in zip(models, pos, neg)]
    together = scoring.binary_auroc_scores_k(fm, pos, neg, (0.0, 0.3), **kw)
    diff, gap = _score_differences(per_model, together)
    assert diff < EXACT and gap > 1e3 * EXACT, (diff, gap)  # so the AUROCs below must be equal, not close
    # the stepper's selection records: the metrics of the K d_k at once are each d_k's own, exactly
    sels = [steppers.BinarySelection(p, q, "val", 0.3, 3, 0, on_device) for p, q in zip(pos, neg)]
    at_once = steppers.BinarySelection.together(fm, sels)
    assert at_once == [s(m) for s, m in zip(sels, models)]
    assert set(at_once[0]) == {"val_clean_auroc", "val_adv_auroc"}
    assert len({r["val_adv_auroc"] for r in at_once}) > 1  # three different models: not one number copied


@pytest.mark.slow
def test_k3_selection_comparison_detects_another_model_or_mixed_up_images(on_device):
    """Negative controls: the same comparison fails when one d_k of the per-model reference is another network
    (different initialization), or when the K-model pass gets d_0's and d_1's images swapped."""
    models = [m.to(on_device) for m in _models("resnet18", 0.125)]
    fm = gf.FusedBinaryModels(models)
    pos, neg = _selection_sets()
    kw = dict(steps=3, batch_size=4, seed=0, device=on_device)
    torch.manual_seed(999)
    other = create_model("resnet18", 1, 0.125).to(torch.float64).to(on_device)
    per_model = [scoring.binary_auroc_scores(m, p, q, (0.0, 0.3), **kw)
                 for m, p, q in zip([models[0], other, models[2]], pos, neg)]
    diff, _ = _score_differences(per_model, scoring.binary_auroc_scores_k(fm, pos, neg, (0.0, 0.3), **kw))
    assert diff > 100 * EXACT, diff
    sels = [steppers.BinarySelection(p, q, "val", 0.3, 3, 0, on_device) for p, q in zip(pos, neg)]
    ref = [s(m) for s, m in zip(sels, models)]
    assert steppers.BinarySelection.together(fm, [sels[0], sels[1], sels[2]]) == ref  # the control's baseline
    assert steppers.BinarySelection(pos[1], neg[1], "val", 0.3, 3, 0, on_device)(other) != ref[1]
    assert steppers.BinarySelection.together(fm, [sels[1], sels[0], sels[2]]) != ref

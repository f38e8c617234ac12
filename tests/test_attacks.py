"""Tests of genrobust.core.attacks: the per-norm pieces, the state guarantees of every attack (mode, .grad, buffers,
global RNG, norm ball, [0, 1], determinism), attack strength on a tiny undefended model, and the Eq. 11-12 attack's
sub-model usage and selection. Everything runs on CPU in well under a minute (tiny models, few steps)."""
from __future__ import annotations

import contextlib
import itertools

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from genrobust.core import attacks as A
from genrobust.core import registry
from genrobust.core.attacks import AttackError
from genrobust.core.config import EvalConfig
from genrobust.core.models import GenerativeClassifier, create_model



@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One intra-op thread for this module (restored afterwards). The tensors here are tiny, so a second thread
    gains little, and on a shared 2-core machine OpenMP barriers between two threads stall badly under load
    (measured: 15 s with one thread vs. 10-290 s with two, depending on what else runs)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)

K = 10
L2_EPS, LINF_EPS = 1.0, 8 / 255


# ----------------------------------------------------------------------------------------------------------------
# Synthetic data and models.
# Class k = an 8x8 central patch of colour COLOURS[k] (corners of a cube + two face centres, pairwise colour distance
# >= 0.28) on a noisy grey background. Easy to learn to 100% clean accuracy, yet an undefended CNN is brittle
# because changing 64 pixels' colour is cheap in L2.
COLOURS = torch.tensor([list(c) for c in itertools.product([0.3, 0.7], repeat=3)] + [[0.5, 0.5, 0.3], [0.5, 0.5, 0.7]])


def make_data(n_per_class: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(K).repeat_interleave(n_per_class)
    x = 0.5 + 0.15 * torch.randn(len(y), 3, 32, 32, generator=g)
    x[:, :, 12:20, 12:20] = COLOURS[y].view(-1, 3, 1, 1) + 0.05 * torch.randn(len(y), 3, 8, 8, generator=g)
    return x.clamp(0, 1), y


def accuracy(model, x, y) -> float:
    with A.eval_mode(model), torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


class LogitAsBinary(nn.Module):
    """d_k(x) = z_k(x) of a softmax model: makes a trained GenerativeClassifier for free (its g(x) = softmax argmax
    shifted by c). The wrapped net is shared by all K wrappers."""

    def __init__(self, net: nn.Module, k: int):
        super().__init__()
        self.net, self.k = net, k

    def forward(self, x):
        return self.net(x)[:, self.k:self.k + 1]


@pytest.fixture(scope="module")
def data():
    return make_data(10, seed=1)  # 100 held-out examples, 10 per class


@pytest.fixture(scope="module")
def softmax_model():
    torch.manual_seed(0)
    model = create_model("small_cnn", num_outputs=K)
    xtr, ytr = make_data(50, seed=0)
    return fit_cross_entropy(model, xtr, ytr, epochs=5, batch=100, generator=torch.Generator().manual_seed(0))


def fit_cross_entropy(model, x, y, *, epochs: int, batch: int, generator=None):
    """Adam (lr 1e-2) on cross-entropy for a few epochs (shuffled by ``generator``, in order without one); returns
    the model in eval mode with no .grad left. Shared by the test modules that need a small trained classifier."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=generator) if generator is not None else torch.arange(len(y))
        for i in range(0, len(y), batch):
            b = order[i:i + batch]
            loss = F.cross_entropy(model(x[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    for p in model.parameters():
        p.grad = None
    return model


@pytest.fixture(scope="module")
def trained_gen(softmax_model):
    c = torch.linspace(-0.2, 0.2, K)  # nonzero calibration so the "+ c_k" of Eq. 12 is exercised
    return GenerativeClassifier([LogitAsBinary(softmax_model, k) for k in range(K)], c=c).eval()


@pytest.fixture(scope="module")
def untrained_gen():
    """10 independent tiny BN CNNs (independent BN statistics per sub-model) with random calibration."""
    torch.manual_seed(1)
    models = [create_model("small_cnn", num_outputs=1, width=0.5) for _ in range(K)]
    return GenerativeClassifier(models, c=0.1 * torch.randn(K)).eval()


@pytest.fixture(scope="module")
def untrained_softmax():
    torch.manual_seed(2)
    return create_model("small_cnn", num_outputs=K, width=0.5).eval()


# ----------------------------------------------------------------------------------------------------------------
# Attack table: every public attack as f(model, x, y, **kw).
def _score1(m, z):  # a scalar objective: logit / d of class 1 (sub-model 1 only for a generative classifier)
    return m.d(z, 1) if isinstance(m, GenerativeClassifier) else m(z)[:, 1]


ATTACKS = {
    "maximize": lambda m, x, y, **kw: A.maximize(m, _score1, x, **kw),
    "pgd_score_min": lambda m, x, y, **kw: A.pgd_score(m, _score1, x, minimize=True, **kw),
    "pgd_untargeted": lambda m, x, y, **kw: A.pgd_untargeted(m, x, y, **kw),
    "pgd_targeted": lambda m, x, y, **kw: A.pgd_targeted(m, x, (y + 1) % K, **kw),
    "eq11_12": lambda m, x, y, **kw: A.eq11_12_attack(m, x, y, **kw),
    "multi_targeted": lambda m, x, y, **kw: A.multi_targeted(m, x, y, **kw),
}


def _pick_model(kind, request):
    return request.getfixturevalue({"softmax": "untrained_softmax", "generative": "untrained_gen"}[kind])


def _small_batch(data, n=6):
    x, y = data
    idx = torch.arange(0, 100, 100 // n)[:n]  # spread over classes
    return x[idx], y[idx]


def _dist(x_adv, x, norm):
    d = (x_adv - x).flatten(1)
    return d.norm(dim=1) if norm == "l2" else d.abs().amax(dim=1)


# ----------------------------------------------------------------------------------------------------------------
# Per-norm pieces.
def test_default_step_size():
    assert A.default_step_size(0.5, 10) == pytest.approx(0.125)
    with pytest.raises(AttackError, match="steps"):
        A.default_step_size(0.5, 0)


@pytest.mark.parametrize("norm", A.NORMS)
def test_random_start_in_ball_and_uses_only_generator(norm):
    x = torch.rand(64, 3, 8, 8)
    state = torch.get_rng_state()
    d1 = A.random_start(x, norm, 0.3, torch.Generator().manual_seed(5))
    d2 = A.random_start(x, norm, 0.3, torch.Generator().manual_seed(5))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(d1, d2) and d1.shape == x.shape
    assert (_dist(d1, 0 * d1, norm) <= 0.3 + 1e-6).all()
    assert (_dist(d1, 0 * d1, norm) > 0.2).all()  # spread in the ball, not collapsed to 0


@pytest.mark.parametrize("norm", A.NORMS)
def test_project(norm):
    delta = torch.randn(8, 3, 4, 4)
    delta[0] = 0
    delta[1] *= 1e-3  # inside the ball: unchanged
    p = A.project(delta, norm, 0.5)
    assert (_dist(p, 0 * p, norm) <= 0.5 + 1e-6).all()
    assert torch.equal(p[0], delta[0]) and torch.allclose(p[1], delta[1])
    if norm == "l2":  # pure rescaling of the rows outside the ball
        assert torch.allclose(_dist(p[2:], 0 * p[2:], "l2"), torch.full((6,), 0.5))


def test_ascent_step():
    delta = torch.zeros(3, 3, 4, 4)
    grad = torch.randn(3, 3, 4, 4)
    grad[2] = 0  # zero gradient: zero step, no NaN
    s = A.ascent_step(delta, grad, "l2", 0.1)
    assert torch.allclose(s[:2].flatten(1).norm(dim=1), torch.full((2,), 0.1))
    assert torch.equal(s[2], delta[2]) and torch.isfinite(s).all()
    s = A.ascent_step(delta, grad, "linf", 0.1)
    assert torch.equal(s, 0.1 * grad.sign())


# ----------------------------------------------------------------------------------------------------------------
# Context managers.
def test_eval_mode_restores_mixed_flags(untrained_gen):
    m = untrained_gen
    m.train()
    m.models[3].eval()  # deliberately mixed
    before = {n: mod.training for n, mod in m.named_modules()}
    with A.eval_mode(m):
        assert not any(mod.training for mod in m.modules())
    assert {n: mod.training for n, mod in m.named_modules()} == before
    m.eval()


def test_frozen_state_restores_bn_stats(untrained_gen, data):
    m = untrained_gen
    before = {n: b.clone() for n, b in m.named_buffers()}
    m.train()
    try:
        with A.frozen_state(m):
            with torch.no_grad():
                m(data[0][:8])
            changed = any(not torch.equal(before[n], b) for n, b in m.named_buffers())
    finally:
        m.eval()
    assert changed  # sanity: a train-mode forward does update BN statistics...
    assert all(torch.equal(before[n], b) for n, b in m.named_buffers())  # ...and frozen_state undoes it


@contextlib.contextmanager
def _leaves_model_alone(model):
    """Give half the parameters a .grad (the others None); after the block, assert that the .grads, BN buffers and the
    global RNG are as before (attacks are pure functions); finally eval mode and no .grad again."""
    params = list(model.parameters())
    try:
        for i, p in enumerate(params):
            p.grad = torch.randn_like(p) if i % 2 == 0 else None
        grads = [None if p.grad is None else p.grad.clone() for p in params]
        buffers = {n: b.clone() for n, b in model.named_buffers()}
        rng = torch.get_rng_state()
        yield
        for p, g in zip(params, grads):
            assert (p.grad is None) if g is None else torch.equal(p.grad, g)
        assert all(torch.equal(buffers[n], v) for n, v in model.named_buffers())
        assert torch.equal(torch.get_rng_state(), rng)
    finally:
        model.eval()
        for p in params:
            p.grad = None


# ----------------------------------------------------------------------------------------------------------------
# Guarantees of every attack.
# Both norms are covered by pairing them with the modes (train/l2, eval/linf), which halves the runtime; the
# norm-ball bound for both norms at several eps is tested again below.
@pytest.mark.parametrize("mode,norm", [("train", "l2"), ("eval", "linf")])
@pytest.mark.parametrize("attack,kind", [(a, k) for a in ATTACKS for k in ("softmax", "generative")
                                         if not (a == "eq11_12" and k == "softmax")])  # eq11_12: generative only
def test_attack_invariants(attack, kind, mode, norm, request, data):
    model = _pick_model(kind, request)
    x, y = _small_batch(data)
    eps = L2_EPS if norm == "l2" else LINF_EPS
    model.train(mode == "train")
    submodules = list(model.modules())
    submodules[len(submodules) // 2].train(mode != "train")  # a mixed state must survive as well
    flags = [mod.training for mod in model.modules()]
    with _leaves_model_alone(model):
        x_adv = ATTACKS[attack](model, x, y, eps=eps, norm=norm, steps=2, random_start=True, restarts=2,
                                generator=torch.Generator().manual_seed(0))
        assert [mod.training for mod in model.modules()] == flags
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype and not x_adv.requires_grad
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert (_dist(x_adv, x, norm) <= eps + 1e-5).all()
    assert (_dist(x_adv, x, norm) > 0).any()  # it did move


# Every registered attack, run through its registry entry as an evaluation runs it (genrobust.core.registry): a new
# entry is tested by being added. Tiny budgets: eval.steps 2 and every registered budget at 2.
TINY = EvalConfig(steps=2, budgets=tuple((name, 2) for name in registry.BUDGETS))


def _run_entry(spec, model, x, y, seed):
    s = spec.settings(TINY)
    return spec.run(model, x, y, registry.AttackCall(
        eps=L2_EPS, norm="l2", steps=s.get("steps"), step_size=s.get("step_size"), restarts=s.get("restarts", 1),
        seed=seed, generator=torch.Generator().manual_seed(seed), budgets=dict(s.get("budgets", ())), warnings=[]))


@pytest.mark.parametrize("name,kind", [(n, k) for n, s in registry.ATTACKS.items() for k in s.applies_to])
def test_every_registered_attack_keeps_the_contract(name, kind, request, data):
    """Through its entry: x_adv in [0, 1] and the eps-ball, the same for the same seed, and the model untouched
    (mode, parameters' .grad, BN buffers) as well as the global RNG."""
    spec = registry.ATTACKS[name]
    model = _pick_model(kind, request)
    x, y = _small_batch(data)
    with _leaves_model_alone(model):
        a, b = (_run_entry(spec, model, x, y, seed=3) for _ in range(2))
        assert not any(mod.training for mod in model.modules())
    assert a.shape == x.shape and a.dtype == x.dtype and not a.requires_grad
    assert a.min() >= 0 and a.max() <= 1
    assert (_dist(a, x, "l2") <= L2_EPS + 1e-4).all()
    assert torch.equal(a, b)


@pytest.mark.parametrize("norm,eps", [("l2", 6.0), ("l2", 0.3), ("linf", 0.3), ("linf", 2 / 255)])
@pytest.mark.parametrize("attack", list(ATTACKS))
def test_norm_bound_with_saturated_pixels(attack, norm, eps, trained_gen, softmax_model, data):
    model = trained_gen if attack == "eq11_12" else softmax_model
    x, y = _small_batch(data, 5)
    x = x.clone()
    x[:, 0] = (x[:, 0] > 0.5).float()  # red channel saturated at 0/1: clamping is active
    x_adv = ATTACKS[attack](model, x, y, eps=eps, norm=norm, steps=3, random_start=True)
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert (_dist(x_adv, x, norm) <= eps + 1e-5).all()


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_eps_zero_returns_copy_of_x(attack, trained_gen, data):
    x, y = _small_batch(data)
    for steps in (0, 5):
        out = ATTACKS[attack](trained_gen, x, y, eps=0, steps=steps, random_start=True)
        assert torch.equal(out, x) and out is not x


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_deterministic_under_seeded_generator(attack, untrained_gen, data):
    x, y = _small_batch(data, 4)
    kw = dict(eps=L2_EPS, steps=2, random_start=True, restarts=2)
    a = ATTACKS[attack](untrained_gen, x, y, generator=torch.Generator().manual_seed(3), **kw)
    b = ATTACKS[attack](untrained_gen, x, y, generator=torch.Generator().manual_seed(3), **kw)
    c = ATTACKS[attack](untrained_gen, x, y, generator=torch.Generator().manual_seed(4), **kw)
    d1 = ATTACKS[attack](untrained_gen, x, y, **kw)  # generator=None: a fixed default seed, still reproducible
    d2 = ATTACKS[attack](untrained_gen, x, y, **kw)
    assert torch.equal(a, b) and torch.equal(d1, d2)
    assert not torch.equal(a, c)


def _margin(z, y):
    return z.scatter(1, y.view(-1, 1), float("-inf")).amax(1) - z.gather(1, y.view(-1, 1))[:, 0]


@pytest.mark.parametrize("attack", ["maximize", "pgd_untargeted"])
def test_restarts_keep_the_per_example_best(attack, softmax_model, data):
    """restarts=R equals the per-example best of R single-restart runs drawing from the same generator stream
    (maximize selects by its score, pgd_untargeted by the margin max_{j != y} z_j - z_y)."""
    x, y = data[0][::10], data[1][::10]
    kw = dict(eps=0.5, steps=2, random_start=True)
    crit = (lambda z: z[:, 1]) if attack == "maximize" else (lambda z: _margin(z, y))
    out = ATTACKS[attack](softmax_model, x, y, restarts=4, generator=torch.Generator().manual_seed(9), **kw)
    g = torch.Generator().manual_seed(9)
    singles = [ATTACKS[attack](softmax_model, x, y, restarts=1, generator=g, **kw) for _ in range(4)]
    with torch.no_grad():
        values = torch.stack([crit(softmax_model(c)) for c in singles])  # (4, N)
        assert torch.allclose(crit(softmax_model(out)), values.max(0).values, atol=1e-5)
    assert (values.max(0).values > values[-1]).any()  # the test is meaningful: the last restart is not always best


def test_batch_size_chunks_match_full_batch(softmax_model, data):
    x, y = data[0][:20], data[1][:20]
    full = A.pgd_untargeted(softmax_model, x, y, eps=0.5, steps=3)
    chunked = A.pgd_untargeted(softmax_model, x, y, eps=0.5, steps=3, batch_size=7)
    assert torch.allclose(full, chunked, atol=1e-4)


def test_works_under_no_grad_and_with_inference_tensors(softmax_model, data):
    x, y = _small_batch(data)
    ref = A.pgd_untargeted(softmax_model, x, y, eps=0.5, steps=2)
    with torch.no_grad():
        out = A.pgd_untargeted(softmax_model, x, y, eps=0.5, steps=2)
    with torch.inference_mode():
        x_inf = x.clone()
    assert torch.equal(out, ref) and not torch.equal(out, x)
    assert torch.equal(A.pgd_untargeted(softmax_model, x_inf, y, eps=0.5, steps=2), ref)


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_inference_mode_is_refused(attack, trained_gen, data):
    x, y = _small_batch(data)
    with torch.inference_mode(), pytest.raises(AttackError, match="inference_mode"):
        ATTACKS[attack](trained_gen, x, y, eps=0.5, steps=2)


# ----------------------------------------------------------------------------------------------------------------
# Bad arguments: one AttackError naming the parameter.
def _bad_cases():
    ok = dict(eps=0.5, steps=2)
    x, y = make_data(1, seed=3)
    return [
        ("eps", dict(ok, eps=-0.1), x, y),
        ("eps", dict(ok, eps=float("nan")), x, y),
        ("steps", dict(ok, steps=0), x, y),
        ("steps", dict(ok, steps=2.5), x, y),
        ("step_size", dict(ok, step_size=0.0), x, y),
        ("step_size", dict(ok, step_size=-1.0), x, y),
        ("norm", dict(ok, norm="l1"), x, y),
        ("restarts", dict(ok, restarts=0), x, y),
        ("restarts", dict(ok, restarts=3), x, y),  # restarts > 1 without random_start
        ("random_start", dict(ok, random_start=1), x, y),
        ("check_values", dict(ok, check_values="no"), x, y),
        ("batch_size", dict(ok, batch_size=0), x, y),
        ("generator", dict(ok, generator=123), x, y),
        ("unknown", dict(ok, epsilon=0.5), x, y),
        ("x", ok, x * 2, y),
        ("x", ok, x - 1, y),
        ("x", ok, x[:, :1], y),
        ("x", ok, x[0], y),
        ("x", ok, (x * 255).to(torch.uint8), y),
        ("y", ok, x, y.int()),
        ("y", ok, x, y[:-1]),
        ("y", ok, x, y + K),
        ("y", ok, x, y - 1),
    ]


@pytest.mark.parametrize("attack", ["pgd_untargeted", "eq11_12", "multi_targeted"])
@pytest.mark.parametrize("param,kw,x,y", _bad_cases())
def test_bad_arguments_raise_attack_error(attack, param, kw, x, y, trained_gen):
    with pytest.raises(AttackError, match=rf"^{param}\b"):
        ATTACKS[attack](trained_gen, x, y, **kw)


@pytest.mark.parametrize("param,kw,x,y", [case for case in _bad_cases() if case[0] != "y"])
def test_maximize_checks_the_common_arguments_as_every_attack(param, kw, x, y, trained_gen):
    """maximize takes the common keyword arguments as **kw, checked by the same begin_attack as the other attacks:
    the same one-line AttackError naming the parameter (an unknown name included: no TypeError)."""
    with pytest.raises(AttackError, match=rf"^{param}\b"):
        ATTACKS["maximize"](trained_gen, x, y, **kw)


def test_bad_arguments_of_other_attacks(softmax_model, trained_gen, data):
    x, y = _small_batch(data)
    with pytest.raises(AttackError, match="model"):
        A.eq11_12_attack(softmax_model, x, y, eps=0.5)
    with pytest.raises(AttackError, match="target"):
        A.pgd_targeted(softmax_model, x, y + K, eps=0.5)  # K learnt from the model's output
    with pytest.raises(AttackError, match="y"):
        A.pgd_untargeted(softmax_model, x, y + K, eps=0.5)
    with pytest.raises(AttackError, match="y"):
        A.multi_targeted(softmax_model, x, y + K, eps=0.5)
    with pytest.raises(AttackError, match="score"):
        A.maximize(softmax_model, lambda m, z: m(z), x, eps=0.5)  # (N, K), not (N,)
    with pytest.raises(AttackError, match="score"):
        A.maximize(softmax_model, "logit", x, eps=0.5)
    with pytest.raises(AttackError, match="minimize"):
        A.pgd_score(softmax_model, _score1, x, eps=0.5, minimize="yes")
    with pytest.raises(AttackError, match="eps"):
        A.pgd_untargeted(softmax_model, x, y)
    with pytest.raises(AttackError, match="norm"):
        A.project(x, "l0", 0.5)
    with pytest.raises(AttackError, match="^check_values"):
        A.pgd_score(softmax_model, _score1, x, eps=0.5, check_values=0)
    # check_values=False skips only the two value checks (the training step's inputs hold them by construction);
    # shapes are checked either way
    A.pgd_score(softmax_model, _score1, x * 2, eps=0.5, steps=1, check_values=False)
    with pytest.raises(AttackError, match="^x"):
        A.pgd_score(softmax_model, _score1, x[:, :1], eps=0.5, check_values=False)


# ----------------------------------------------------------------------------------------------------------------
# Strength on the undefended model (also checks the attacks are not broken).
def test_robust_accuracy_decreases_with_eps_and_collapses(softmax_model, data):
    x, y = data
    assert accuracy(softmax_model, x, y) >= 0.95
    accs = []
    with A.eval_mode(softmax_model):
        for eps in (0.0, 0.25, 0.5, 1.0, 2.0, 4.0):
            x_adv = A.pgd_untargeted(softmax_model, x, y, eps=eps, norm="l2", steps=10)
            accs.append(accuracy(softmax_model, x_adv, y))
    assert accs[0] >= 0.95
    for a, b in zip(accs, accs[1:]):
        assert b <= a + 1 / len(y) + 1e-9, accs  # non-increasing up to one example
    assert accs[-1] <= 0.10, accs
    assert min(accs) < accs[0] - 0.5, accs  # actually falls


def test_linf_attack_collapses_undefended_model(softmax_model, data):
    x, y = data
    x_adv = A.pgd_untargeted(softmax_model, x, y, eps=32 / 255, norm="linf", steps=10)
    assert accuracy(softmax_model, x_adv, y) <= 0.10


@pytest.mark.slow
def test_multi_targeted_at_least_as_strong_as_untargeted(softmax_model, data):
    x, y = data[0][::2], data[1][::2]  # 50 examples
    pgd = A.pgd_untargeted(softmax_model, x, y, eps=0.5, steps=10)
    mt = A.multi_targeted(softmax_model, x, y, eps=0.5, steps=10)
    acc_pgd, acc_mt = accuracy(softmax_model, pgd, y), accuracy(softmax_model, mt, y)
    assert acc_mt <= acc_pgd + 2 / len(y) + 1e-9, (acc_mt, acc_pgd)  # up to noise (two examples)
    assert acc_mt < accuracy(softmax_model, x, y) - 0.1  # and it does attack


@pytest.mark.parametrize("norm,eps", [("l2", 0.5), ("linf", 4 / 255)])
def test_pgd_score_moves_the_score_in_the_right_direction(softmax_model, data, norm, eps):
    x = data[0][::5]
    with torch.no_grad():
        clean = softmax_model(x)[:, 1]
        up = softmax_model(A.pgd_score(softmax_model, _score1, x, eps=eps, norm=norm))[:, 1]
        down = softmax_model(A.pgd_score(softmax_model, _score1, x, eps=eps, norm=norm, minimize=True))[:, 1]
    assert (up > clean).all() and (down < clean).all()


def test_targeted_attack_reaches_target(softmax_model, data):
    x, y = data[0][::4], data[1][::4]
    t = (y + 3) % K
    x_adv = A.pgd_targeted(softmax_model, x, t, eps=3.0, steps=10)
    with torch.no_grad():
        assert (softmax_model(x_adv).argmax(1) == t).float().mean() >= 0.9


# ----------------------------------------------------------------------------------------------------------------
# Eq. 11-12 on the generative classifier.
def _record_submodel_inputs(gen):
    """Forward hooks recording the input of every call to each sub-model: {k: [(n, 3, H, W) tensors]}."""
    seen = {k: [] for k in range(gen.num_classes)}
    hooks = [gen.models[k].register_forward_hook(lambda mod, inp, out, k=k: seen[k].append(inp[0].detach().clone()))
             for k in range(gen.num_classes)]
    return seen, hooks


def _count_submodel_inputs(gen):
    seen, hooks = _record_submodel_inputs(gen)
    return _Sizes(seen), hooks


class _Sizes(dict):
    """View of recorded inputs as batch sizes: {k: [n, ...]}."""

    def __init__(self, seen):
        super().__init__()
        self.seen = seen

    def __getitem__(self, k):
        return [t.shape[0] for t in self.seen[k]]

    def values(self):
        return [self[k] for k in self.seen]

    def clear_all(self):
        for v in self.seen.values():
            v.clear()


def test_eq11_12_runs_only_needed_submodels(untrained_gen, data):
    x, y = data
    idx = torch.tensor([0, 1, 10, 20, 21, 22, 50, 51])  # classes 0, 0, 1, 2, 2, 2, 5, 5
    x, y = x[idx], y[idx]
    seen, hooks = _count_submodel_inputs(untrained_gen)
    try:
        A.eq11_12_attack(untrained_gen, x, y, eps=0.5, steps=3, random_start=True, restarts=2)
        for k in range(K):
            n_other = int((y != k).sum())
            # every call to sub-model k is on exactly the examples with y != k ...
            assert seen[k] and set(seen[k]) == {n_other}, (k, seen[k])
            # ... 3 steps + 1 selection forward per restart
            assert len(seen[k]) == 2 * (3 + 1)
            # ... and each input row is a perturbation (L2 <= 0.5) of an example of another class: distinct clean
            # examples are >= 5 apart here, so the nearest clean example identifies the row.
            rows = torch.cat(seen.seen[k]).flatten(1)
            dist, nearest = torch.cdist(rows, x.flatten(1), compute_mode="donot_use_mm_for_euclid_dist").min(dim=1)
            assert (dist <= 0.5 + 1e-4).all() and (y[nearest] != k).all()
            assert set(nearest.tolist()) == set((y != k).nonzero()[:, 0].tolist())  # all of them
        assert torch.cdist(x.flatten(1), x.flatten(1)).add(torch.eye(len(x)) * 1e3).min() > 5
        seen.clear_all()
        A.eq11_12_attack(untrained_gen, x[y == 2], y[y == 2], eps=0.5, steps=2)
        assert seen[2] == [] and all(seen[k] == [3] * 3 for k in range(K) if k != 2)
    finally:
        for h in hooks:
            h.remove()


def test_multi_targeted_step_touches_only_target_and_true_class(untrained_gen, data):
    x, y = data[0][:3], data[1][:3]  # all class 0: targets t = j, one offset per run
    seen, hooks = _count_submodel_inputs(untrained_gen)
    try:
        A.multi_targeted(untrained_gen, x, y, eps=0.5, steps=2)
    finally:
        for h in hooks:
            h.remove()
    # sub-model t (t != 0): 2 steps of its own run + one selection forward per run (9 runs)
    for t in range(1, K):
        assert sum(seen[t]) == 3 * (2 + 9)
    assert sum(seen[0]) == 3 * (2 * 9 + 9)  # d_y in every step of every run, + selection


def test_eq11_12_keeps_the_largest_dk_plus_ck(trained_gen, data):
    x, y = data[0][::9], data[1][::9]  # 12 examples over all classes
    kw = dict(eps=1.0, norm="l2", steps=4, random_start=True, restarts=2)
    with A.eval_mode(trained_gen):
        out = A.eq11_12_attack(trained_gen, x, y, generator=torch.Generator().manual_seed(7), **kw)
        # Brute force: Eq. 11 per k with the same generator stream (k ascending, examples with y != k batched).
        gen = torch.Generator().manual_seed(7)
        cands = torch.empty(K, *x.shape)
        vals = torch.full((K, len(y)), float("-inf"))
        for k in range(K):
            idx = (y != k).nonzero(as_tuple=True)[0]
            cands[k, idx] = A.pgd_score(trained_gen, lambda m, z, k=k: m.d(z, k), x[idx], generator=gen, **kw)
            with torch.no_grad():
                vals[k, idx] = trained_gen.d(cands[k, idx], k) + trained_gen.c[k]
        best = vals.argmax(0)  # (N,) Eq. 12
        assert (best != y).all()
        expected = cands[best, torch.arange(len(y))]
        assert torch.allclose(out, expected, atol=1e-6)
        with torch.no_grad():
            z = trained_gen(out)
        # the returned example attains the max over candidates of d_k + c_k
        assert torch.allclose(z.gather(1, best.view(-1, 1))[:, 0], vals.max(0).values, atol=1e-4)


def test_eq11_12_fools_trained_generative_classifier(trained_gen, data):
    x, y = data[0][::2], data[1][::2]
    with A.eval_mode(trained_gen):
        x_adv = A.eq11_12_attack(trained_gen, x, y, eps=2.0, steps=10)
    assert accuracy(trained_gen, x, y) >= 0.95
    assert accuracy(trained_gen, x_adv, y) <= 0.2

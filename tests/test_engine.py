"""The training engine's settings and device paths, as far as the CPU can check them: engine settings resolved per
device and kept out of run keys; the on-device batch source (run here on CPU tensors) draws the distribution of
the CPU one; the K-model fit with data on the device trains, resumes and refuses runs at different epochs."""
import contextlib
import dataclasses
import traceback

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from genrobust.core import attacks, objectives
from genrobust.core.config import EngineConfig, apply_overrides, config_hash, from_dict, get_profile, to_dict
from genrobust.core.models import create_model
from genrobust.data import batches as B
from genrobust.store import runs
from genrobust.training import binary, loop

TINY = {"data.synthetic_train_per_class": 64, "data.synthetic_test_per_class": 16, "data.val_per_class": 8,
        "train.batch_size": 32, "train.epochs": 2, "train.classes": (0, 1)}


def test_engine_settings_resolve_per_device():
    cpu = loop.engine_for(None, "cpu")
    assert cpu == loop.Engine(autocast=None, cudnn_benchmark=False, data_on_device=False)  # the exact CPU stream
    cuda = loop.engine_for(None, "cuda")  # the rule; constructing the device needs no GPU
    assert cuda == loop.Engine(autocast=None, cudnn_benchmark=True, data_on_device=True)
    bf16 = loop.engine_for(EngineConfig(autocast="bf16"), "cuda")
    assert bf16 == loop.Engine(autocast=torch.bfloat16, cudnn_benchmark=True, data_on_device=True)
    off = loop.engine_for(EngineConfig(autocast="off", cudnn_benchmark="off", data_on_device="off"), "cuda")
    assert off == cpu
    # autocast and cuDNN autotuning never apply on the CPU; data on the device may be asked for (tests)
    forced = loop.engine_for(EngineConfig(autocast="bf16", cudnn_benchmark="on", data_on_device="on"), "cpu")
    assert forced == loop.Engine(autocast=None, cudnn_benchmark=False, data_on_device=True)


def test_engine_settings_are_not_part_of_any_run_key():
    p = get_profile("paper")
    q = apply_overrides(p, {"engine.autocast": "off", "engine.cudnn_benchmark": "off", "engine.data_on_device": "on"})
    assert q.engine != p.engine
    for k in range(10):
        assert config_hash(runs.binary_run_config(q, k)) == config_hash(runs.binary_run_config(p, k))
    assert config_hash(runs.softmax_run_config(q)) == config_hash(runs.softmax_run_config(p))
    assert runs.classifier_path(q) == runs.classifier_path(p)
    assert from_dict(to_dict(q)) == q  # jobs carry it
    # a training setting does move the run (the check above is not vacuous)
    r = apply_overrides(p, {"train.eps": 0.2})
    assert config_hash(runs.binary_run_config(r, 0)) != config_hash(runs.binary_run_config(p, 0))


def _labelled_images(y):
    """uint8 images whose pixel (0, 0, 0) is the label and (1, 0, 0)/(1, 0, 1) the index; the rest of channel 2 a
    left-to-right ramp (so a horizontal flip is visible)."""
    n = len(y)
    idx = torch.arange(n)
    x = torch.zeros(n, 3, 32, 32, dtype=torch.uint8)
    x[:, 0, 0, 0] = y.to(torch.uint8)
    x[:, 1, 0, 0] = (idx // 256).to(torch.uint8)
    x[:, 1, 0, 1] = (idx % 256).to(torch.uint8)
    x[:, 2] = (torch.arange(32, dtype=torch.uint8) * 8 + 1).view(1, 1, 32)
    return x


def _ids(xb):
    return (xb[:, 1, 0, 0].long() * 256 + xb[:, 1, 0, 1].long()).tolist()


def test_device_batches_draw_the_cpu_distribution():
    """On CPU tensors: each epoch's positives are the class-k images once each, negatives distinct and not k,
    a fresh permutation per epoch, reproducible from the run's generator, which advances one draw per epoch."""
    y = torch.arange(10).repeat_interleave(30)
    x = _labelled_images(y)
    g = torch.Generator().manual_seed(0)
    db = B.DeviceBinaryBatches(x, y, 3, 8, "none", generator=g)
    ref = B.BinaryBatches(x, y, 3, 8, generator=torch.Generator())
    assert len(db) == len(ref) == 7
    epoch1 = list(db)
    assert len(epoch1) == 7
    pos = [i for xp, _ in epoch1 for i in _ids(xp)]
    neg = [i for _, xn in epoch1 for i in _ids(xn)]
    assert all(xp.shape == xn.shape == (4, 3, 32, 32) and xp.dtype == torch.uint8 for xp, xn in epoch1)
    assert len(set(pos)) == 28 and all(y[i] == 3 for i in pos)
    assert len(set(neg)) == len(neg) == 28 and all(y[i] != 3 for i in neg)
    assert [i for xp, _ in db for i in _ids(xp)] != pos  # the next epoch: a fresh permutation
    again = B.DeviceBinaryBatches(x, y, 3, 8, "none", generator=torch.Generator().manual_seed(0))
    assert [i for xp, _ in again for i in _ids(xp)] == pos


def test_device_batches_crop_and_flip():
    """crop_flip on the device path: shapes kept, about half the images flipped, crop offsets over 0..8."""
    y = torch.arange(10).repeat_interleave(100)
    x = _labelled_images(y)
    db = B.DeviceBinaryBatches(x, y, 0, 100, "crop_flip", generator=torch.Generator().manual_seed(1))
    out = torch.cat([torch.cat([xp, xn]) for xp, xn in db])
    assert out.shape == (200, 3, 32, 32) and out.dtype == torch.uint8
    row = out[:, 2, 16].long()  # (N, 32): the ramp, shifted by the crop, reversed when flipped, 0 in the padding
    inner = row[:, 4:28]  # always inside the image for crop offsets in 0..8
    flipped = (inner[:, 1:] < inner[:, :-1]).all(1)
    unflipped = (inner[:, 1:] > inner[:, :-1]).all(1)
    assert bool((flipped | unflipped).all())
    assert 0.3 < flipped.float().mean().item() < 0.7
    # output column 4 shows source column 4 + ox - 4 = ox (ox in 0..8, padded coordinates) for unflipped images
    ox = (inner[unflipped, 0] - 1) // 8
    assert ox.min() >= 0 and ox.max() <= 8 and len(set(ox.tolist())) >= 6
    with pytest.raises(B.DataError, match="autoaugment_cutout runs per image on the CPU"):
        B.DeviceBinaryBatches(x, y, 0, 100, "autoaugment_cutout", generator=torch.Generator())


def test_fused_fit_with_data_on_the_device_trains_and_resumes(tmp_path, monkeypatch):
    """engine.data_on_device='on' on the CPU runs the device path end to end: the K-model fit trains, and a run
    stopped after epoch 1 resumes to the uninterrupted weights (the run's CPU generator seeds each epoch)."""
    p = apply_overrides(get_profile("smoke"), {**TINY, "engine.data_on_device": "on", "train.epochs": 3})
    monkeypatch.setenv("GENROBUST_RUNS", str(tmp_path / "whole"))
    whole = binary.train_binaries_fused(p, progress=False)
    assert [r["path"] for r in whole] == ["fused (2 models)"] * 2
    ref = {k: torch.load(runs.binary_result(p, k)["checkpoint"], weights_only=True)["state"]["model"] for k in (0, 1)}
    monkeypatch.setenv("GENROBUST_RUNS", str(tmp_path / "resumed"))
    real, saved = loop.save_torch, []

    def stop_after_first_epoch(path, obj):
        real(path, obj)
        saved.append(path)
        if len(saved) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(loop, "save_torch", stop_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        binary.train_binaries_fused(p, progress=False)
    monkeypatch.setattr(loop, "save_torch", real)
    res = binary.train_binaries_fused(p, progress=False)
    assert [m["epoch"] for m in res[0]["metrics"]] == [1, 2, 3]
    for k in (0, 1):
        got = torch.load(runs.binary_result(p, k)["checkpoint"], weights_only=True)["state"]["model"]
        for name, v in ref[k].items():
            assert torch.equal(got[name], v), (k, name)
    # the device stream is not the CPU one: the same profile with data on the CPU trains other weights
    monkeypatch.setenv("GENROBUST_RUNS", str(tmp_path / "cpu"))
    q = apply_overrides(p, {"engine.data_on_device": "off"})
    binary.train_binaries_fused(q, progress=False)
    other = torch.load(runs.binary_result(q, 0)["checkpoint"], weights_only=True)["state"]["model"]
    assert any(not torch.equal(other[n], v) for n, v in ref[0].items())


def test_fit_refuses_runs_at_different_epochs(tmp_path, monkeypatch):
    monkeypatch.setenv("GENROBUST_RUNS", str(tmp_path))
    p = apply_overrides(get_profile("smoke"), TINY)
    from_data = binary.prepare_data(p.data, progress=False)
    engine = loop.engine_for(None, "cpu")
    rs = [binary._open_binary_run(p, k, from_data, torch.device("cpu"), False, engine, from_data.train_x)
          for k in (0, 1)]
    rs[1].start_epoch = 1
    with pytest.raises(ValueError, match="one epoch"):
        loop.fit(rs, binary.BinaryStepper(rs, p.train, "cpu"), data_source={}, device="cpu", desc="test",
                 progress=False)
    rs[1].start_epoch, rs[1].epochs = 0, 3  # same start, another end: the runs' epochs are fit's, so they must agree
    with pytest.raises(ValueError, match=r"numbers of epochs \[2, 3\]"):
        loop.fit(rs, binary.BinaryStepper(rs, p.train, "cpu"), data_source={}, device="cpu", desc="test",
                 progress=False)
    rs[1].epochs, rs[1].cfg = 2, dataclasses.replace(rs[1].cfg, select_every=2)  # fit reads one select_every
    with pytest.raises(ValueError, match=r"got selection intervals \[1, 2\]$"):
        loop.fit(rs, binary.BinaryStepper(rs, p.train, "cpu"), data_source={}, device="cpu", desc="test",
                 progress=False)


def test_bf16_autocast_keeps_weights_bn_statistics_loss_and_pgd_state_fp32(tmp_path, monkeypatch):
    """The stepper under bf16 autocast (on CUDA in training; torch's CPU autocast runs the same code here): the
    forward passes are bf16 (the loss moves off fp32's, slightly), while the perturbations, the loss, the weights
    and the BN running statistics stay fp32."""
    monkeypatch.setenv("GENROBUST_RUNS", str(tmp_path))
    p = apply_overrides(get_profile("smoke"), TINY)
    data = binary.prepare_data(p.data, progress=False)
    adv = []
    real = objectives.perturb_negatives
    monkeypatch.setattr(objectives, "perturb_negatives", lambda *a: adv.append(real(*a)) or adv[-1])
    losses = {}
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        engine = loop.Engine(autocast=dtype, cudnn_benchmark=False, data_on_device=False)
        rs = [binary._open_binary_run(p, k, data, torch.device("cpu"), False, engine, data.train_x) for k in (0, 1)]
        stepper = binary.BinaryStepper(rs, p.train, "cpu", engine)
        stepper.train()
        bad, stats, n = stepper.step([next(iter(r.make_batches(r.generator))) for r in rs], check_now=True)
        stepper.sync()
        losses[name] = stats["loss"]
        assert stats["loss"].dtype == torch.float32 and adv[-1].dtype == torch.float32 and n == 2 * 32
        assert not bad.any() and [r.step for r in rs] == [1, 1]
        for r in rs:
            assert all(v.dtype == torch.float32 for v in r.model.state_dict().values() if v.is_floating_point())
            assert all(torch.isfinite(v).all() for v in r.model.parameters())
    diff = (losses["bf16"] - losses["fp32"]).abs().max().item()
    assert 0 < diff < 0.05, losses


def test_an_augmentation_the_device_does_not_draw_keeps_the_data_on_the_cpu():
    """autoaugment_cutout (the ablation's policy) runs per image on the CPU: with the data on the device asked for,
    d_k's engine keeps them on the CPU instead of failing."""
    p = apply_overrides(get_profile("smoke"), {**TINY, "engine.data_on_device": "on"})
    assert binary._engine(p, "cpu").data_on_device
    q = apply_overrides(p, {"train.augment": "autoaugment_cutout"})
    assert not binary._engine(q, "cpu").data_on_device
    assert not binary._engine(q, "cuda").data_on_device and binary._engine(p, "cuda").data_on_device


# ---------------------------------------------------------------------------------------------------------------
# No host sync inside a training step. On CUDA, reading a device tensor's value on the host (.item(), bool(),
# float(), .tolist(), .numpy(), .cpu(), torch.equal, nonzero, a boolean mask) or a host<->device copy that waits
# (.to(device) without non_blocking) makes the host wait for the device. The CPU shows every such call as it is
# made, on CPU tensors: an op-level recorder (TorchDispatchMode: the dispatcher ops that read values, also when a
# library calls them) and patched Tensor methods (the reads and copies that do not pass the dispatcher on the CPU).
# What the CPU cannot show: a sync inside a CUDA kernel or library call (benchmarks/gpu_engine_check.sh 'syncs'
# counts those with torch.cuda.set_sync_debug_mode on a GPU).
HOST_READ_OPS = {"_local_scalar_dense", "equal", "nonzero", "masked_select", "_unique", "_unique2", "unique_dim",
                 "unique_consecutive"}


def _where() -> str:
    """The innermost genrobust (or test) frame of the current stack: where a recorded call was made."""
    for frame in reversed(traceback.extract_stack()[:-2]):
        if "genrobust" in frame.filename and "test_engine" not in frame.filename:
            return f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno} {frame.name}"
    return "?"


class _HostReadOps(TorchDispatchMode):
    def __init__(self, seen: list):
        super().__init__()
        self.seen = seen

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        masked = name.startswith("index") and any(isinstance(t, torch.Tensor) and t.dtype == torch.bool
                                                  for t in tree_leaves(args))  # a boolean mask: a nonzero inside
        if name in HOST_READ_OPS or masked:
            self.seen.append(f"aten.{name} at {_where()}")
        return func(*args, **(kwargs or {}))


def _waits(args, kwargs) -> bool:
    """Whether a Tensor.to / .cuda call names a device (a copy between host and device on CUDA) and may block."""
    names_device = "device" in kwargs or any(isinstance(a, (torch.device, str, torch.Tensor)) for a in args)
    return names_device and kwargs.get("non_blocking") is not True and True not in args


@contextlib.contextmanager
def host_syncs():
    """The list of calls that would be host syncs on CUDA, recorded while the block runs."""
    seen = []
    reads, copies = ("tolist", "numpy", "cpu"), ("to", "cuda")
    real = {name: getattr(torch.Tensor, name) for name in reads + copies}

    def recorder(name):
        def call(t, *args, **kwargs):
            if name in reads or _waits(args, kwargs):
                seen.append(f"Tensor.{name} at {_where()}")
            return real[name](t, *args, **kwargs)
        return call

    for name in real:
        setattr(torch.Tensor, name, recorder(name))
    try:
        with _HostReadOps(seen):
            yield seen
    finally:
        for name, f in real.items():
            setattr(torch.Tensor, name, f)


def test_a_training_step_reads_no_tensor_on_the_host(tmp_path, monkeypatch):
    """fit's step as it runs on CUDA (the stepper's step with the NaN flag kept on the device, or'ed and summed as
    fit does), K = 2 fused and K = 1,
    the batches drawn by the device path (engine.data_on_device), Eq. 9 (two inner attacks) with random starts and
    a learning rate that changes every step (onecycle): no host read and no blocking copy. The first step is left
    out: it builds the folded view of the network once."""
    monkeypatch.setenv("GENROBUST_RUNS", str(tmp_path))
    p = apply_overrides(get_profile("smoke"), {**TINY, "engine.data_on_device": "on", "train.objective": "combined",
                                               "train.eps1": 0.2, "train.attack_random_start": True,
                                               "train.lr_schedule": "onecycle"})
    data = binary.prepare_data(p.data, progress=False)
    engine = binary._engine(p, "cpu")
    x_train = binary._train_images(data, engine, "cpu")
    for classes in ((0, 1), (2,)):
        rs = [binary._open_binary_run(p, k, data, torch.device("cpu"), False, engine, x_train) for k in classes]
        stepper = binary.BinaryStepper(rs, p.train, "cpu", engine)
        stepper.train()
        iters, sums = [iter(r.make_batches(r.generator)) for r in rs], {}
        nonfinite = torch.zeros(len(rs), dtype=torch.bool)

        def step():  # one step of fit's epoch loop on CUDA
            bad, stats, n = stepper.step([next(it) for it in iters], check_now=False)
            nonfinite.logical_or_(bad)  # fit: nonfinite |= bad
            loop.add_stats(sums, stats)
            return n
        step()
        lrs = [r.lr for r in rs]
        with host_syncs() as seen:
            for _ in range(2):
                n = step()
        assert seen == [], (classes, seen)
        assert n == 32 * len(classes) and not nonfinite.any() and set(sums) == {"loss", "acc"}
        assert [r.lr for r in rs] != lrs  # the learning rates moved during the recorded steps


def test_the_softmax_objective_reads_no_tensor_on_the_host():
    """The softmax PGD-AT objective (its inner attack with labels), forward and backward: no host read."""
    cfg = get_profile("smoke").softmax
    torch.manual_seed(0)
    model = create_model("small_cnn", 10, 0.25).train()
    x, y = torch.rand(8, 3, 32, 32), torch.arange(8)
    objectives.softmax_pgd_at_loss(model, x, y, cfg, torch.Generator().manual_seed(0))  # builds the folded view
    with host_syncs() as seen:
        loss, _ = objectives.softmax_pgd_at_loss(model, x, y, cfg, torch.Generator().manual_seed(0))
        loss.backward()
    assert seen == [] and cfg.eps > 0, seen


def test_the_host_read_recorder_sees_each_kind_of_sync(tmp_path, monkeypatch):
    """Negative controls: the recorder above sees the public attacks' value checks, fit's per-step flag read on the
    CPU (read_flag=True), a blocking copy, a boolean mask and a list read."""
    monkeypatch.setenv("GENROBUST_RUNS", str(tmp_path))
    p = apply_overrides(get_profile("smoke"), TINY)
    data = binary.prepare_data(p.data, progress=False)
    engine = loop.engine_for(None, "cpu")
    rs = [binary._open_binary_run(p, 0, data, torch.device("cpu"), False, engine, data.train_x)]
    stepper = binary.BinaryStepper(rs, p.train, "cpu", engine)
    iters, x = [iter(rs[0].make_batches(rs[0].generator))], torch.rand(4, 3, 32, 32)
    stepper.step([next(it) for it in iters], check_now=False)
    calls = {
        "the step's flag read on the CPU": lambda: stepper.step([next(it) for it in iters], check_now=True),
        "the public attack's range check": lambda: attacks.pgd_score(rs[0].model, objectives.d_score, x, eps=0.1,
                                                                     steps=1),
        "the public attack's label check": lambda: attacks.pgd_untargeted(create_model("small_cnn", 10, 0.25), x,
                                                                          torch.arange(4), eps=0.1, steps=1),
        "a blocking copy": lambda: x.to("cpu"),
        "a boolean mask": lambda: x[x > 0.5],
        "a list read": lambda: x.sum((1, 2, 3)).tolist(),
    }
    for what, call in calls.items():
        with host_syncs() as seen:
            call()
        assert seen, what
    with host_syncs() as seen:  # and the same attacks told that their inputs hold: none
        attacks.pgd_score(rs[0].model, objectives.d_score, x, eps=0.1, steps=1, check_values=False)
        attacks.pgd_untargeted(create_model("small_cnn", 10, 0.25), x, torch.arange(4), eps=0.1, steps=1,
                               check_values=False)
    assert seen == [], seen

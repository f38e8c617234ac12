#!/usr/bin/env bash
# Issue 24's GPU checks of the training engine, prepared on a CPU machine and NOT RUN YET: run it once on a lent
# GPU (about 9 min on an H100/H200; each part has its own time limit, so one failure does not cost the others).
#   bash benchmarks/gpu_engine_check.sh [NAME...]    (NAMEs: equivalence syncs selection precision epoch epoch_bf16;
#                                                     default all)
# Logs go to $OUT (default ./bench-gpu-engine), one file per part; keep them under benchmarks/logs/.
#   equivalence  the K-model step equals the per-model step in fp32 on CUDA (TF32 off), tests/test_fused.py; also
#                the K d_k's selection at once equals their per-model selections (float64 on CUDA)
#   syncs        host syncs left inside fit's training step (loop.train_step as fit runs it on CUDA: the data on
#                the device, the NaN flag kept there) for the paper's 10 d_k fused and for one d_k, counted per
#                step with torch.cuda.set_sync_debug_mode, each site named; expected 0 (tests/test_engine.py
#                checks the host reads on the CPU; this finds syncs inside CUDA kernels and libraries). The
#                benchmarks' bare fused_train_step (one isfinite read by design) is the control: >= 1
#   selection    one selection of the paper's 10 d_k at once on their K-model network vs one d_k's (x 10 one
#                after another), at the paper's size (1,000 class-k + 1,000 other images, clean + PGD-10)
#   precision    a short bf16 training run against fp32 on the same seeds: losses per epoch and final AUROC,
#                the differences printed (not only a pass)
#   epoch        bench_epoch.py at the paper profile: the old engine (OLD_REV, default 18bdf27, the issue's
#                reference) and the new one (engine 'auto': fp32, cuDNN autotuning, data on the device) in one run
#   epoch_bf16   the new one with bf16 autocast: if it beats 'epoch', set ENGINE_RULE['cuda']['autocast'] = True
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-bench-gpu-engine}
OLD_REV=${OLD_REV:-18bdf27}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONPATH=lib${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
ONLY=" $* "
want() { [[ "$ONLY" == "  " || "$ONLY" == *" $1 "* ]]; }
part() {  # part NAME SECONDS COMMAND...: one check, its output to the console and $OUT/NAME.log
    local name=$1 limit=$2; shift 2
    want "$name" || return 0
    echo "== $name: $*"
    local t0=$SECONDS
    timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
    echo "== $name: exit ${PIPESTATUS[0]} after $((SECONDS - t0)) s"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.log"
"$PY" -c "import torch, genrobust; print('torch', torch.__version__, 'cuda', torch.version.cuda,
      torch.cuda.get_device_name(0), 'genrobust', genrobust.__version__)" 2>&1 | tee -a "$OUT/gpu.log"
git log -1 --format='commit %h %s' 2>/dev/null | tee -a "$OUT/gpu.log"

part equivalence 120 env GENROBUST_TEST_DEVICE=cuda "$PY" -m pytest -q tests/test_fused.py

part syncs 180 "$PY" - <<'EOF'
# Host syncs inside fit's step (loop.train_step, NaN flag on the device as fit keeps it on CUDA), counted with
# torch's sync debug mode: the paper's step (width 0.5, PGD-10, batch 128) with onecycle learning rates (they change
# every step: FusedSGD's copy of them is in every step), the data drawn on the device.
import os, tempfile, warnings, torch
from genrobust.core.config import apply_overrides, get_profile
from genrobust.data import prepare_data
from genrobust.training import binary, loop
from genrobust.training import fused as gf
p = apply_overrides(get_profile("paper"), {
    "data.source": "synthetic", "data.synthetic_train_per_class": 640, "data.synthetic_test_per_class": 10,
    "data.val_per_class": 0, "data.train_per_class": None, "data.test_per_class": None,
    "train.select_on": "last", "train.lr_schedule": "onecycle", "train.lr_drop_epoch": None})
dev = torch.device("cuda")
data = prepare_data(p.data, progress=False)
engine = binary._engine(p, dev)
x_train = binary._train_images(data, engine, dev)
print(f"engine {engine}; steps recorded after 2 warm-up steps")


def count(step, n_steps=3):
    """Sync warnings of n_steps calls of step(), per step, and by site (file:line of the Python frame)."""
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(n_steps):
                step()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    sites = {}
    for w in syncs:
        key = f"{os.path.relpath(w.filename)}:{w.lineno}: {str(w.message)[:100]}"
        sites[key] = sites.get(key, 0) + 1
    return len(syncs) / n_steps, sites


def show(what, per_step, sites):
    print(f"host syncs per step, {what}: {per_step:g}")
    for site, n in sorted(sites.items(), key=lambda kv: -kv[1]):
        print(f"  {n:4d} x {site}")


for classes in (tuple(range(10)), (0,)):
    with tempfile.TemporaryDirectory() as d:
        os.environ["GENROBUST_RUNS"] = d
        cl = len(classes) == 1 and p.train.channels_last  # as train_binary / train_binaries_fused open them
        rs = [binary._open_binary_run(p, k, data, dev, cl, engine, x_train) for k in classes]
        stepper = binary.BinaryStepper(rs, p.train, dev, engine)
        stepper.train()
        iters, sums = [iter(r.make_batches(r.generator)) for r in rs], {}
        nonfinite = torch.zeros(len(rs), dtype=torch.bool, device=dev)
        step = lambda: loop.train_step(stepper, iters, sums, nonfinite, read_flag=False)  # noqa: E731
        step(); step()  # warm-up: the folded view, cuDNN autotuning, the allocator
        show(f"fit's step, K = {len(classes)} ({'fused' if len(classes) > 1 else 'one d_k'}; expected 0)",
             *count(step))
# control: the benchmarks' bare fused step reads its isfinite flag on the host once per step, by design
fm = gf.FusedBinaryModels([loop.seeded_model("resnet18", 1, 0.5, k) for k in range(10)]).to(dev).train()
opt = gf.FusedSGD(fm.parameters(), lrs=[0.1] * 10, momentum=0.9, weight_decay=1e-4)
x = torch.rand(10, 128, 3, 32, 32, device=dev)
bare = lambda: gf.fused_train_step(fm, opt, x[:, :64], x[:, 64:], p.train, torch.Generator().manual_seed(0))  # noqa: E731
bare(); bare()
show("control: the bare fused_train_step (its isfinite read, >= 1)", *count(bare))
EOF

part selection 240 "$PY" - <<'EOF'
# One selection of the paper's 10 d_k at once (BinarySelection.together on their fused network, as the fused path
# selects every select_every epochs) vs one d_k's selection, at the paper's selection size; TF32 as in training.
import sys, torch
sys.path.insert(0, "benchmarks")
import bench_epoch
from genrobust.core.config import get_profile
p = get_profile("paper")
t = bench_epoch.measure_selection(p, torch.device("cuda"), together=True)
k = len(p.train.classes)
print(f"one d_k's selection ({t['images']} images, clean + PGD-{p.train.select_attack_steps}): {t['one']:.2f} s; "
      f"x {k} one after another: {k * t['one']:.2f} s")
print(f"all {k} d_k at once on the fused network: {t['all']:.2f} s ({k * t['one'] / t['all']:.2f}x)")
n_select = -(-p.train.epochs // p.train.select_every)
print(f"the paper run's {n_select} selection epochs: {n_select * k * t['one'] / 3600:.2f} h one after another, "
      f"{n_select * t['all'] / 3600:.2f} h at once")
EOF

part precision 300 "$PY" - <<'EOF'
# bf16 autocast vs fp32 on the same seeds: the gpu profile's d_k for 3 classes, 3 epochs, 1000 images per class.
import os, tempfile, torch
from genrobust.core.config import apply_overrides, get_profile
from genrobust.data import prepare_data
from genrobust.training import binary
base = apply_overrides(get_profile("paper"), {
    "data.source": "synthetic", "data.synthetic_train_per_class": 1000, "data.synthetic_test_per_class": 200,
    "data.val_per_class": 100, "data.train_per_class": None, "data.test_per_class": None, "train.epochs": 3,
    "train.classes": (0, 1, 2), "train.select_on": "val", "train.select_n": None, "train.select_every": 1})
data = prepare_data(base.data, progress=False)
out = {}
for mode in ("off", "bf16"):
    p = apply_overrides(base, {"engine.autocast": mode})
    with tempfile.TemporaryDirectory() as d:
        os.environ["GENROBUST_RUNS"] = d
        out[mode] = binary.train_binaries_fused(p, data=data, device="cuda", progress=False)
print("class epoch  loss fp32   loss bf16   diff    | adv AUROC fp32  bf16   diff   | img/s fp32  bf16")
for k, (a, b) in enumerate(zip(out["off"], out["bf16"])):
    for ma, mb in zip(a["metrics"], b["metrics"]):
        print(f"{k:5d} {ma['epoch']:5d}  {ma['train_loss']:.5f}    {mb['train_loss']:.5f}    "
              f"{mb['train_loss'] - ma['train_loss']:+.5f} | {ma['val_adv_auroc']:.4f}        "
              f"{mb['val_adv_auroc']:.4f} {mb['val_adv_auroc'] - ma['val_adv_auroc']:+.4f} | "
              f"{ma['fused_images_per_s']:9.0f} {mb['fused_images_per_s']:7.0f}")
EOF

part epoch 420 "$PY" benchmarks/bench_epoch.py --device cuda --profile paper --paths fused --compare-old "$OLD_REV"
part epoch_bf16 200 "$PY" benchmarks/bench_epoch.py --device cuda --profile paper --paths fused --set engine.autocast=bf16

#!/usr/bin/env bash
# Issue 24's GPU checks of the training engine that the gpu run's two calls do not make, prepared on a CPU machine
# and NOT RUN YET: for a later GPU session, in one device call (the part limits sum to 540 s, under the 600 s a
# command may run; each part has its own limit, so one failure does not cost the others).
#   bash benchmarks/gpu_engine_check.sh [NAME...]    (NAMEs: equivalence selection precision; default all)
# Logs go to $OUT (default ./bench-gpu-engine), one file per part; keep them under benchmarks/logs/.
# The old-vs-new engine comparison (fp32 and bf16) and the host syncs per step moved to benchmarks/engine_check.py,
# which needs no git on the device: call 1 of docs/gpu-profile.md runs it (tools/gpu_run.py engine).
#   equivalence  the K-model step equals the per-model step in fp32 on CUDA (TF32 off), tests/test_fused.py; also
#                the K d_k's selection at once equals their per-model selections (float64 on CUDA)
#   selection    one selection of the paper's 10 d_k at once on their K-model network vs one d_k's (x 10 one
#                after another), at the paper's size (1,000 class-k + 1,000 other images, clean + PGD-10)
#   precision    a short bf16 training run against fp32 on the same seeds: losses per epoch and final AUROC,
#                the differences printed (not only a pass)
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-bench-gpu-engine}
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

part selection 180 "$PY" - <<'EOF'
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

part precision 240 "$PY" - <<'EOF'
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

#!/usr/bin/env bash
# Issue 24's GPU checks of the training engine, prepared on a CPU machine and NOT RUN YET: run it once on a lent
# GPU (about 8 min on an H100/H200; each part has its own time limit, so one failure does not cost the others).
#   bash benchmarks/gpu_engine_check.sh [NAME...]    (NAMEs: equivalence syncs precision epoch epoch_bf16; default all)
# Logs go to $OUT (default ./bench-gpu-engine), one file per part; keep them under benchmarks/logs/.
#   equivalence  the K-model step equals the per-model step in fp32 on CUDA (TF32 off), tests/test_fused.py
#   syncs        host syncs left inside a training step (torch.cuda.set_sync_debug_mode), counted per step
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

part syncs 120 "$PY" - <<'EOF'
# Host syncs inside the fused paper step (attack, update), counted with torch's sync debug mode.
import warnings, torch
from genrobust.core.config import get_profile
from genrobust.core.models import create_model
from genrobust.training import fused as gf
cfg = get_profile("paper").train
dev = torch.device("cuda")
fm = gf.FusedBinaryModels([create_model("resnet18", 1, 0.5) for _ in range(10)]).to(dev).train()
opt = gf.FusedSGD(fm.parameters(), lrs=[0.1] * 10, momentum=0.9, weight_decay=1e-4)
x = torch.rand(10, 128, 3, 32, 32, device=dev)
gf.fused_train_step(fm, opt, x[:, :64], x[:, 64:], cfg, torch.Generator().manual_seed(0))  # warm-up
torch.cuda.synchronize()
torch.cuda.set_sync_debug_mode("warn")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    gf.fused_train_step(fm, opt, x[:, :64], x[:, 64:], cfg, torch.Generator().manual_seed(0))
torch.cuda.set_sync_debug_mode(0)
sites = {}
for w in caught:
    sites[str(w.message)[:160]] = sites.get(str(w.message)[:160], 0) + 1
print(f"host syncs in one fused paper step (bare step, no data pipeline): {len(caught)}")
for msg, n in sorted(sites.items(), key=lambda kv: -kv[1]):
    print(f"  {n:4d} x {msg}")
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

#!/usr/bin/env bash
# The GPU benchmarks of README's Performance section, in priority order, each under its own time limit so that one
# slow or failing benchmark does not cost the others. Logs go to $OUT (or ./bench-gpu), one file per benchmark.
#   bash benchmarks/run_gpu.sh [NAME...]   (needs CUDA; PYTHON defaults to python3 with lib/ on PYTHONPATH;
#                                         NAMEs pick benchmarks by the names below, default all)
# torchattacks (bench_attacks) is optional: without it that benchmark says so and the rest run.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-bench-gpu}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONPATH=lib${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
ONLY=" $* "
run() {  # run NAME SECONDS ARGS...: one benchmark, its output to the console and $OUT/NAME.log
    local name=$1 limit=$2; shift 2
    [[ "$ONLY" == "  " || "$ONLY" == *" $name "* ]] || return 0
    echo "== $name: $*"
    local t0=$SECONDS
    timeout "$limit" "$PY" "$@" 2>&1 | tee "$OUT/$name.log"
    echo "== $name: exit ${PIPESTATUS[0]} after $((SECONDS - t0)) s"
}
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader | tee "$OUT/gpu.log"
"$PY" -c "import torch, genrobust; print('torch', torch.__version__, 'cuda', torch.version.cuda,
      torch.cuda.get_device_name(0), 'tf32 conv', torch.backends.cudnn.allow_tf32,
      'tf32 matmul', torch.backends.cuda.matmul.allow_tf32)" 2>&1 | tee -a "$OUT/gpu.log"
run fused_pgd2 80 benchmarks/bench_fused.py --device cuda --widths 0.5,0.125
run fused_pgd10 80 benchmarks/bench_fused.py --device cuda --widths 0.5 --pgd-steps 10
run epoch_paper 200 benchmarks/bench_epoch.py --device cuda --profile paper --softmax
run train_step 90 benchmarks/bench_train.py --device cuda --amp
run amp 60 benchmarks/bench_amp.py --device cuda
run attacks 45 benchmarks/bench_attacks.py --device cuda
run attacks_fp32 45 benchmarks/bench_attacks.py --device cuda --no-tf32
# the fused == sequential equivalence tests (float64 and float32, negative control) on the GPU
GENROBUST_TEST_DEVICE=cuda run fused_equivalence 120 -m pytest -q -p no:cacheprovider tests/test_fused.py \
    -k "matches_sequential or mixed_up"

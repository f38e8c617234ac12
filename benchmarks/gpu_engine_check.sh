#!/usr/bin/env bash
# Issue 24's GPU check, prepared on the CPU and not run yet (no GPU was lent when it was written). One device call
# (see docs/gpu-profile.md for how the repo and its wheels reach the machine); the raw log goes to $OUT and is
# committed under benchmarks/logs/. Old engine = 18bdf27 (the 2026-12-04 H200 reference), new = this tree, in the
# same run on the same GPU:
#   1. numerics: the K-model step in fp32 against the per-model step (tests/test_fused.py on CUDA);
#   2. bench_epoch.py --profile paper, fused path, new vs old (--compare-old), steady-state rate and projection.
# The device copy has no git history: stage the old package first, here, and carry it with the call:
#   mkdir -p .gpu_carry/old-18bdf27 && git archive 18bdf27 lib | tar -x -C .gpu_carry/old-18bdf27
set -euo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
log="$OUT/gpu_engine_check.log"
{
  echo "== $(date -u +%FT%TZ) $(git rev-parse --short HEAD 2>/dev/null || echo "${GENROBUST_GIT_COMMIT:-unknown}")"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version())"
  echo "== numerics (CUDA): K-model step vs per-model step"
  PYTHONPATH=lib timeout 240 python3 -m pytest -q tests/test_fused.py -k "matches_sequential or perturbations" 2>&1 | tail -5
  echo "== end to end, paper profile, fused path: new vs old engine"
  PYTHONPATH=lib timeout 300 python3 benchmarks/bench_epoch.py --device cuda --profile paper --paths fused \
      --train-per-class 1000 --epochs 2 --compare-old .gpu_carry/old-18bdf27
} 2>&1 | tee "$log"

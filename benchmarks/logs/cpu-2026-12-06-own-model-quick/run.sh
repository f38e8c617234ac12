#!/usr/bin/env bash
# `genrobust evaluate --model <pyautoattack's example ResNet18> --budget quick` on a fresh clone of this branch, on
# the project's 2-core machine (shared with other developers' work: the load average is logged before and after).
# Usage: bash benchmarks/logs/cpu-2026-12-06-own-model-quick/run.sh [SOURCE_REPO] [CLONE_DIR]
set -euo pipefail
SRC=${1:-/work/wt-40}
CLONE=${2:-/work/clone-40}   # beside /work/shared, so ../shared/data/cifar10-jpeg.zip resolves
LOGS=$(cd "$(dirname "$0")" && pwd)
rm -rf "$CLONE"
git clone -q "$SRC" "$CLONE"
cd "$CLONE"
echo "commit $(git rev-parse --short HEAD); $(nproc) cores; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)" \
    > "$LOGS/machine.txt"
echo "load before: $(cat /proc/loadavg)" >> "$LOGS/machine.txt"
start=$(date +%s.%N)
PYTHONPATH="$CLONE/lib" /work/main/.venv/bin/python -m genrobust evaluate \
    --model tests/fixtures/aa_example_resnet.py:build --budget quick --format markdown \
    > "$LOGS/stdout.md" 2> "$LOGS/stderr.log"
end=$(date +%s.%N)
echo "load after: $(cat /proc/loadavg)" >> "$LOGS/machine.txt"
echo "wall time of the command: $(echo "$end - $start" | bc) s" >> "$LOGS/machine.txt"
cp "$CLONE"/runs/evaluations/genrobust-evaluation-*-quick.json "$LOGS/record.json"

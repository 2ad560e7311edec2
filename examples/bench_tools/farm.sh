#!/usr/bin/env bash
# The task farm on the Mandelbrot workload, spmd beside the same farm in mpi4py, in one run; then the cost of an
# empty task in each. Prints each program's per-schedule summary (imbalance = max/mean busy time, elapsed),
# medians of ROUNDS rounds that interleave the schedules.
#
# usage: [NP=4] [ROUNDS=3] [PYTHON=python3] examples/bench_tools/farm.sh      (after cargo build --release --examples)
#   PYTHON needs mpi4py and numpy: python3 -m venv /tmp/venv && /tmp/venv/bin/pip install mpi4py numpy
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
np=${NP:-4} py=${PYTHON:-python3} rounds=${ROUNDS:-3}
[ "$(id -u)" = 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
run=(mpirun --oversubscribe -n "$np")
ex="$here/target/release/examples/mandelbrot"
pyfarm="$here/examples/bench_tools/farm_mpi4py.py"
small=(--width 600 --height 450 --max-iter 300 --coordinator-only)
summary() { sed -n '/^schedule  /,$p'; }
echo "== spmd, 1200x900, max 2000 iterations, root coordinates"
"${run[@]}" "$ex" --schedule all --repeat "$rounds" --width 1200 --height 900 --max-iter 2000 --coordinator-only | summary
echo "== spmd, the same, root computes too"
"${run[@]}" "$ex" --schedule all --repeat "$rounds" --width 1200 --height 900 --max-iter 2000 | summary
echo "== spmd, 600x450, max 300 iterations, root coordinates"
"${run[@]}" "$ex" --schedule all --repeat "$rounds" "${small[@]}" | summary
echo "== mpi4py, the same"
"${run[@]}" "$py" "$pyfarm" --schedule all --repeat "$rounds" "${small[@]}" | summary
echo "== empty tasks"
for _ in $(seq "$rounds"); do
    "${run[@]}" "$ex" --empty-tasks 100000
    "${run[@]}" "$py" "$pyfarm" --empty-tasks 20000
done

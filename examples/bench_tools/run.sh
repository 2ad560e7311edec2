#!/usr/bin/env bash
# Side-by-side benchmark of spmd and the C MPI baseline, keeping every round's raw output, then a comparison that
# also reports the rounds where both programs ran on the same placement of the vCPUs (see examples/bench_tools/compare.py).
#
# usage: examples/bench_tools/run.sh [-r ROUNDS] [-w all|pt2pt|coll] [-o DIR] [-c] -- [BENCH ARGS...]
#   Runs ../shared/bench/mpi_bench.c (the baseline) and target/release/examples/bench alternately at np 2 with
#   the baseline's flags (--bind-to core --mca btl self,vader). Default: 5 rounds, everything, DIR a new temp dir.
#   -c: each round also runs C making the checks spmd makes (probe_cost.c for pt2pt, agree_cost.c for coll),
#   compared in the last columns.
set -euo pipefail
rounds=5 what=all out="" checks=""
while getopts "r:w:o:c" o; do case $o in r) rounds=$OPTARG ;; w) what=$OPTARG ;; o) out=$OPTARG ;; c) checks=1 ;; *) exit 2 ;; esac; done
shift $((OPTIND - 1)); [ "${1:-}" = "--" ] && shift
here=$(cd "$(dirname "$0")/../.." && pwd)
base="$here/../shared/bench"
[ -f "$base/mpi_bench.c" ] || { echo "bench: no baseline at $base" >&2; exit 2; }
out=${out:-$(mktemp -d "${TMPDIR:-/tmp}/spmd-bench.XXXXXX")}
mkdir -p "$out"
mpicc -O2 -o "$out/mpi_bench" "$base/mpi_bench.c"
check_progs=()
if [ -n "$checks" ]; then
    [ "$what" != coll ] && check_progs+=(probe_cost)
    [ "$what" != pt2pt ] && check_progs+=(agree_cost)
    for p in "${check_progs[@]}"; do mpicc -O2 -o "$out/$p" "$here/examples/bench_tools/$p.c"; done
fi
[ "$(id -u)" = 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
flags=(--bind-to core --mca btl self,vader)
spmd_what=$what; [ "$what" = all ] && spmd_what=all
mpirun -np 2 "${flags[@]}" "$out/mpi_bench" "$what" > /dev/null   # warm-up, discarded
for r in $(seq "$rounds"); do
    echo "round $r/$rounds" >&2
    mpirun -np 2 "${flags[@]}" "$out/mpi_bench" "$what" >> "$out/c.txt"
    for p in "${check_progs[@]}"; do mpirun -np 2 "${flags[@]}" "$out/$p" >> "$out/checks.txt"; done
    mpirun -np 2 "${flags[@]}" "$here/target/release/examples/bench" "$spmd_what" "$@" >> "$out/spmd.txt"
done
echo "raw output in $out" >&2
if [ -n "$checks" ]; then
    python3 "$here/examples/bench_tools/compare.py" "$out/c.txt" "$out/spmd.txt" "$out/checks.txt"
else
    python3 "$here/examples/bench_tools/compare.py" "$out/c.txt" "$out/spmd.txt"
fi

#!/usr/bin/env bash
# The kernel gallery's timing: every kernel at 1 and 2 ranks (one thread each, bound to a core), interleaved,
# ROUNDS times (default 3), on sizes that run for a few seconds serially. Writes gallery.csv (kernel,np,elapsed_s)
# and draws docs/gallery.png with the scaling_plot example, which also prints the table.
#
#   cargo build --release --examples && bash examples/gallery.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
CSV=${CSV:-gallery.csv}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
kernels=(pi montecarlo_pi heat2d cg_poisson summa fft2d samplesort nbody mandelbrot)
args() {
    case $1 in
        pi) echo "--intervals 1000000000" ;;
        montecarlo_pi) echo "--tasks 64 --samples 10000000" ;;
        heat2d) echo "--n 2048 --steps 700" ;;
        cg_poisson) echo "--n 600" ;;
        summa) echo "--n 3400" ;;
        fft2d) echo "--rows 2048 --cols 2048 --repeat 7" ;;
        samplesort) echo "--n 60000000" ;;
        nbody) echo "--n 20000 --steps 3" ;;
        mandelbrot) echo "--width 1600 --height 1200 --max-iter 3000" ;;
    esac
}
: > "$CSV"
for r in $(seq "$ROUNDS"); do
    for k in "${kernels[@]}"; do
        for np in 1 2; do
            # shellcheck disable=SC2046
            line=$(mpirun -n "$np" --bind-to core "target/release/examples/$k" $(args "$k") --threads 1 | grep '^summary:')
            t=$(echo "$line" | grep -o 'elapsed_s=[0-9.]*' | cut -d= -f2)
            echo "round $r: $k np=$np ${t} s" >&2
            echo "$k,$np,$t" >> "$CSV"
        done
    done
done
target/release/examples/scaling_plot "$CSV" docs/gallery.png

"""Ping-pong of numpy arrays with mpi4py's buffer calls (Send/Recv), in the format of the C baseline and spmd's
bench (`case=pingpong size=<bytes> usec=<one-way median> ...`), with the same method: each size calibrates its
iteration count to ~BENCH_TARGET_MS per repetition, then times BENCH_REPS repetitions between barriers.

    mpirun -n 2 --bind-to core python3 examples/bench_tools/mpi4py_pingpong.py [min_bytes]

numpy gives large arrays transparent huge pages, which is why mpi4py beats C's malloc'd buffers at megabytes.
"""
import os
import sys

import numpy as np
from mpi4py import MPI

comm = MPI.COMM_WORLD
rank = comm.Get_rank()
target = float(os.environ.get("BENCH_TARGET_MS", "50")) / 1e3
reps = int(os.environ.get("BENCH_REPS", "5"))
lo = int(sys.argv[1]) if len(sys.argv) > 1 else 8
sizes = [s for s in (8 * 4**k for k in range(12)) if lo <= s <= 8 << 20] + [16 << 20]
peer = 1 - rank

if rank == 0:
    print(f'# impl=mpi4py np={comm.Get_size()} reps={reps} target_ms={target * 1e3:.0f} mpi4py={MPI.Get_library_version().splitlines()[0]!r}')


def run(buf_s, buf_r, iters):
    comm.Barrier()
    t0 = MPI.Wtime()
    for _ in range(iters):
        if rank == 0:
            comm.Send(buf_s, dest=peer, tag=1)
            comm.Recv(buf_r, source=peer, tag=1)
        else:
            comm.Recv(buf_r, source=peer, tag=1)
            comm.Send(buf_s, dest=peer, tag=1)
    t = MPI.Wtime() - t0
    return comm.allreduce(t, op=MPI.MAX)


for n in sizes:
    s = np.ones(n, dtype=np.uint8)
    r = np.zeros(n, dtype=np.uint8)
    iters = 1
    while True:
        t = run(s, r, iters)
        if t >= target / 2:
            break
        iters *= 2
    iters = max(1, int(iters * target / max(t, 1e-9)))
    times = sorted(run(s, r, iters) / iters / 2 * 1e6 for _ in range(reps))
    med = times[len(times) // 2]
    if rank == 0:
        print(f"case=pingpong size={n} usec={med:.3f} mbps={n / med:.1f} np=2 iters={iters} min={times[0]:.3f} max={times[-1]:.3f}")

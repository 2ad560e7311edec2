"""The task farm of examples/mandelbrot.rs written by hand in mpi4py, for comparison.

Same protocol as spmd's farm: rank 0 deals chunks of row indices (static block, static cyclic, dynamic, guided),
computing rows itself between answering requests unless --coordinator-only; each worker keeps two requests
outstanding; results (pickled numpy rows) come back with the next request. Rows are computed with numpy, the
counts equal the Rust example's (same arithmetic, no fused multiply-add).

    mpirun -n 4 python3 examples/bench_tools/farm_mpi4py.py --width 600 --height 450 --max-iter 300
    mpirun -n 4 python3 examples/bench_tools/farm_mpi4py.py --empty-tasks 20000
"""

import argparse
import time
from collections import deque

import numpy as np
from mpi4py import MPI

REPORT, WORK = 1, 2
DEPTH = 2


def row(y, w, h, region, max_iter):
    x0, x1, y0, y1 = region
    ci = y1 - (y + 0.5) * (y1 - y0) / h
    cr = x0 + (np.arange(w) + 0.5) * ((x1 - x0) / w)
    n = np.zeros(w, dtype=np.uint32)
    idx = np.arange(w)
    zr = np.zeros(w)
    zi = np.zeros(w)
    for _ in range(max_iter):
        zr2, zi2 = zr * zr, zi * zi
        alive = zr2 + zi2 <= 4.0
        if not alive.all():
            idx, zr, zi, zr2, zi2, cr = idx[alive], zr[alive], zi[alive], zr2[alive], zi2[alive], cr[alive]
            if idx.size == 0:
                break
        n[idx] += 1
        zi = 2.0 * zr * zi + ci
        zr = zr2 - zi2 + cr
    return n


class Dealer:
    """Which indices the computing rank in `slot` gets next (the same rules as spmd::farm::Schedule)."""

    def __init__(self, schedule, chunk, n, slots):
        self.schedule, self.chunk, self.n, self.slots = schedule, chunk, n, max(slots, 1)
        self.next = 0
        self.dealt = [False] * self.slots

    def next_for(self, slot):
        n, p = self.n, self.slots
        if self.schedule in ("static-block", "static-cyclic"):
            if self.dealt[slot]:
                return None
            self.dealt[slot] = True
            if self.schedule == "static-block":
                q, r = divmod(n, p)
                start = slot * q + min(slot, r)
                ids = list(range(start, start + q + (slot < r)))
            else:
                ids = list(range(slot, n, p))
        else:
            remaining = n - self.next
            # Guided: p counts the chunks held at once, DEPTH per computing rank (as spmd's dealer).
            c = self.chunk if self.schedule == "dynamic" else max(self.chunk, remaining // (2 * p * DEPTH))
            c = min(c, remaining)
            ids = list(range(self.next, self.next + c))
            self.next += c
        return ids or None


def farm_map(comm, n, f, schedule, chunk, root_works):
    """Returns (results in index order at rank 0, per-rank (tasks, chunks, busy), elapsed)."""
    rank, p = comm.Get_rank(), comm.Get_size()
    tasks = chunks = 0
    busy = 0.0
    t0 = time.perf_counter()
    if rank != 0:
        for _ in range(DEPTH):
            comm.send(None, dest=0, tag=REPORT)
        outstanding = DEPTH
        while True:
            ids = comm.recv(source=0, tag=WORK)
            outstanding -= 1
            if ids is None:
                if outstanding == 0:
                    break
                continue
            t = time.perf_counter()
            out = [f(i) for i in ids]
            busy += time.perf_counter() - t
            tasks += len(ids)
            chunks += 1
            comm.send(out, dest=0, tag=REPORT)
            outstanding += 1
        comm.allgather((tasks, chunks, busy))
        return None, None, None
    computes = root_works or p == 1
    slots = {r: s for s, r in enumerate(r for r in range(p) if computes or r != 0)}
    dealer = Dealer(schedule, chunk, n, len(slots))
    results = [None] * n
    pending = [deque() for _ in range(p)]
    received, dealt = [0] * p, [0] * p
    live = p - 1
    own, own_done = deque(), not computes
    status = MPI.Status()

    def serve():
        nonlocal live
        out = comm.recv(source=MPI.ANY_SOURCE, tag=REPORT, status=status)
        w = status.Get_source()
        received[w] += 1
        if out is not None:
            for i, r in zip(pending[w].popleft(), out):
                results[i] = r
        ids = dealer.next_for(slots[w])
        comm.send(ids, dest=w, tag=WORK)
        if ids is None:
            if received[w] == DEPTH + dealt[w]:
                live -= 1
        else:
            pending[w].append(ids)
            dealt[w] += 1

    while True:
        if not own_done:
            while live > 0 and comm.Iprobe(source=MPI.ANY_SOURCE, tag=REPORT):
                serve()
            if not own:
                ids = dealer.next_for(slots[0])
                if ids is None:
                    own_done = True
                    continue
                own.extend(ids)
                chunks += 1
            i = own.popleft()
            t = time.perf_counter()
            results[i] = f(i)
            busy += time.perf_counter() - t
            tasks += 1
        elif live > 0:
            serve()
        else:
            break
    elapsed = time.perf_counter() - t0
    tally = comm.allgather((tasks, chunks, busy))
    return results, tally, elapsed


def imbalance(tally, root_works):
    busy = [b for r, (_, _, b) in enumerate(tally) if root_works or r != 0 or len(tally) == 1]
    mean = sum(busy) / len(busy)
    return max(busy) / mean if mean > 0 else 1.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=600)
    ap.add_argument("--height", type=int, default=450)
    ap.add_argument("--region", default="-2.2,0.8,-1.2,1.2")
    ap.add_argument("--max-iter", type=int, default=300)
    ap.add_argument("--schedule", default="all")
    ap.add_argument("--chunk", type=int, default=1)
    ap.add_argument("--coordinator-only", action="store_true")
    ap.add_argument("--empty-tasks", type=int)
    ap.add_argument("--repeat", type=int, default=1)
    a = ap.parse_args()
    comm = MPI.COMM_WORLD.Dup()
    rank = comm.Get_rank()
    if a.empty_tasks is not None:
        farm_map(comm, min(a.empty_tasks, 1000), lambda i: i, "dynamic", 1, False)
        comm.Barrier()
        t = time.perf_counter()
        farm_map(comm, a.empty_tasks, lambda i: i, "dynamic", 1, False)
        dt = time.perf_counter() - t
        if rank == 0:
            print(f"mpi4py empty tasks: {a.empty_tasks} on {comm.Get_size()} ranks (dynamic:1, root coordinates): "
                  f"{dt:.3f} s, {dt * 1e6 / max(a.empty_tasks, 1):.2f} us per task")
        return
    region = [float(v) for v in a.region.split(",")]
    schedules = ["static-block", "static-cyclic", "dynamic", "guided"] if a.schedule == "all" else [a.schedule]
    w, h, m = a.width, a.height, a.max_iter
    if rank == 0:
        print(f"mpi4py mandelbrot {w}x{h}, max {m} iterations, {comm.Get_size()} ranks")
    summary = []
    for s in [s for _ in range(max(a.repeat, 1)) for s in schedules]:
        comm.Barrier()
        img, tally, elapsed = farm_map(comm, h, lambda y: row(y, w, h, region, m), s, a.chunk,
                                       not a.coordinator_only)
        if rank == 0:
            name = s if s.startswith("static") else f"{s}:{a.chunk}"
            total = int(sum(int(r.sum()) for r in img))
            print(f"schedule {name}: tasks per rank {[t for t, _, _ in tally]}, busy "
                  f"{[round(b, 3) for _, _, b in tally]}, total iterations {total}")
            summary.append((name, imbalance(tally, not a.coordinator_only), elapsed))
    if rank == 0:
        title = f" (medians of {a.repeat})" if a.repeat > 1 else ""
        print(f"\n{'schedule':<15} {'imbalance':>9} {'elapsed s':>10}{title}")
        for name in dict.fromkeys(n for n, _, _ in summary):
            runs = [(imb, el) for n, imb, el in summary if n == name]
            imb = sorted(r[0] for r in runs)[len(runs) // 2]
            el = sorted(r[1] for r in runs)[len(runs) // 2]
            print(f"{name:<15} {imb:>9.3f} {el:>10.4f}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Compare the C baseline and spmd benchmark outputs (lines `case=.. size=.. usec=.. ... probe=a,b`).

usage: bench_compare.py C.txt SPMD.txt [NEAR_US]

For each (case, size): the median over all rounds of each program and the ratio spmd/C (as
../shared/bench/compare.py); then the same over the rounds whose probes (8-byte ping-pong before and after the case)
were both below NEAR_US (default 0.25 us), i.e. where the two vCPUs were placed near each other. On a machine
whose placement changes during the run, the second table compares like with like.
"""
import statistics
import sys


def load(path, near):
    rows, near_rows = {}, {}
    for line in open(path):
        if not line.startswith("case="):
            continue
        kv = dict(f.split("=", 1) for f in line.split() if "=" in f)
        key = (kv["case"], int(kv["size"]))
        us = float(kv["usec"])
        rows.setdefault(key, []).append(us)
        probe = [float(p) for p in kv.get("probe", "9,9").split(",")]
        if max(probe) < near:
            near_rows.setdefault(key, []).append(us)
    return rows, near_rows


def table(title, a, b):
    print(title)
    print(f"{'case':<22}{'bytes':>10}{'C usec':>11}{'spmd usec':>11}{'spmd/C':>8}{'rounds':>9}")
    for key in sorted(set(a) | set(b)):
        ca, cb = a.get(key), b.get(key)
        ma = statistics.median(ca) if ca else None
        mb = statistics.median(cb) if cb else None
        ratio = f"{mb / ma:.2f}" if ma and mb else "-"
        n = f"{len(ca or [])}/{len(cb or [])}"
        fa = f"{ma:.3f}" if ma is not None else "-"
        fb = f"{mb:.3f}" if mb is not None else "-"
        print(f"{key[0]:<22}{key[1]:>10}{fa:>11}{fb:>11}{ratio:>8}{n:>9}")


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    near = float(sys.argv[3]) if len(sys.argv) > 3 else 0.25
    ca, cn = load(sys.argv[1], near)
    sa, sn = load(sys.argv[2], near)
    table("all rounds (medians)", ca, sa)
    print()
    table(f"rounds on near placement (both probes < {near} us)", cn, sn)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Compare the C baseline and spmd benchmark outputs (lines `case=.. size=.. usec=.. ... probe=a,b`).

usage: compare.py C.txt SPMD.txt [OTHER.txt] [NEAR_US]

For each (case, size): the median over all rounds of each program and the ratio spmd/C (as
../shared/bench/compare.py); then the same over the rounds whose probes (8-byte ping-pong before and after the case)
were both below NEAR_US (default 0.25 us), i.e. where the two vCPUs were placed near each other. On a machine
whose placement changes during the run, the second table compares like with like.

OTHER.txt, if given, is the output of a third program in the same format run in the same rounds
(mpi4py_pingpong.py; or probe_cost.c and agree_cost.c, C making the checks spmd makes); its medians and the ratio
spmd/OTHER are added for the cases it has (all rounds only, since it prints no probe).
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


def table(title, a, b, other=None, name="other"):
    print(title)
    extra = f"{name + ' usec':>15}{'spmd/' + name:>15}" if other else ""
    print(f"{'case':<22}{'bytes':>10}{'C usec':>11}{'spmd usec':>11}{'spmd/C':>8}{'rounds':>9}{extra}")
    for key in sorted(set(a) | set(b)):
        ca, cb = a.get(key), b.get(key)
        ma = statistics.median(ca) if ca else None
        mb = statistics.median(cb) if cb else None
        ratio = f"{mb / ma:.2f}" if ma and mb else "-"
        n = f"{len(ca or [])}/{len(cb or [])}"
        fa = f"{ma:.3f}" if ma is not None else "-"
        fb = f"{mb:.3f}" if mb is not None else "-"
        extra = ""
        if other and key in other:
            mo = statistics.median(other[key])
            extra = f"{mo:>15.3f}{(f'{mb / mo:.2f}' if mb else '-'):>15}"
        print(f"{key[0]:<22}{key[1]:>10}{fa:>11}{fb:>11}{ratio:>8}{n:>9}{extra}")


def impl_name(path):
    for line in open(path):
        if line.startswith("# impl="):
            return line.split()[1].split("=", 1)[1]
    return "other"


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    near, other, name = 0.25, None, "other"
    for arg in sys.argv[3:]:
        try:
            near = float(arg)
        except ValueError:
            other, name = load(arg, near)[0], impl_name(arg)
    ca, cn = load(sys.argv[1], near)
    sa, sn = load(sys.argv[2], near)
    table("all rounds (medians)", ca, sa, other, name)
    print()
    table(f"rounds on near placement (both probes < {near} us)", cn, sn)


if __name__ == "__main__":
    main()

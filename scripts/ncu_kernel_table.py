#!/usr/bin/env python3
"""Sum the kernel times of an `ncu --csv --metrics gpu__time_duration.sum` log by kernel name.

usage: ncu --profile-from-start off --clock-control none --metrics gpu__time_duration.sum --csv \
           PROGRAM ... > ncu.csv
       scripts/ncu_kernel_table.py ncu.csv [top=40]
Prints a markdown table: kernel, launches, total ms, share of the sum (ncu times each kernel
alone, serialized: the sum is close to, not equal to, the step's wall time).
"""
import csv
import sys
from collections import defaultdict


def main():
    path = sys.argv[1]
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    with open(path, newline="") as f:
        lines = [line for line in f if line.startswith('"')]  # ncu's own messages start with ==
    rows = csv.DictReader(lines)
    total = defaultdict(float)
    count = defaultdict(int)
    for r in rows:
        if r.get("Metric Name") != "gpu__time_duration.sum":
            continue
        name = r["Kernel Name"]
        value = float(r["Metric Value"].replace(",", ""))
        unit = r.get("Metric Unit", "nsecond")
        scale = {"nsecond": 1e-6, "ns": 1e-6, "usecond": 1e-3, "us": 1e-3, "msecond": 1.0, "ms": 1.0, "second": 1e3, "s": 1e3}[unit]
        short = name.split("(")[0][:90]
        total[short] += value * scale
        count[short] += 1
    whole = sum(total.values())
    print(f"| kernel | launches | ms | share |\n|---|---|---|---|")
    for name, ms in sorted(total.items(), key=lambda kv: -kv[1])[:top]:
        print(f"| `{name}` | {count[name]} | {ms:.2f} | {ms / whole:.3f} |")
    print(f"| **all {sum(count.values())} launches** | | **{whole:.2f}** | 1.000 |")


if __name__ == "__main__":
    main()

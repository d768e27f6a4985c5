#!/usr/bin/env python3
"""Run a command and print its wall time, its peak host RSS (the largest process among it and its
children: getrusage RUSAGE_CHILDREN) and the GPU's peak memory in use while it ran (nvidia-smi
polled every 0.2 s; minus what was in use before it started), as one Markdown table row.

usage: measure.py LABEL -- COMMAND [ARGS...]
"""
import resource
import subprocess
import sys
import threading
import time


def gpu_used_mib():
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10).stdout
        return max(int(v) for v in out.split())
    except Exception:
        return None


def main():
    label, command = sys.argv[1], sys.argv[sys.argv.index("--") + 1:]
    base = gpu_used_mib()
    peak = [base]
    done = threading.Event()

    def poll():
        while not done.wait(0.2):
            used = gpu_used_mib()
            if used is not None and (peak[0] is None or used > peak[0]):
                peak[0] = used

    watcher = threading.Thread(target=poll, daemon=True)
    if base is not None:
        watcher.start()
    start = time.time()
    rc = subprocess.call(command)
    wall = time.time() - start
    done.set()
    rss_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / 1e9
    gpu = f"{(peak[0] - base) / 1024:.1f} GiB" if base is not None else "-"
    print(f"| {label} | {wall:.0f} s | {rss_gb:.2f} GB | {gpu} | exit {rc} |", flush=True)
    sys.exit(rc)


if __name__ == "__main__":
    main()

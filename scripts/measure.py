#!/usr/bin/env python3
"""Run a command and print its wall time, its peak host RSS (the largest process among it and its
children: getrusage RUSAGE_CHILDREN) and the GPU's peak memory in use while it ran (nvidia-smi
polled every 0.2 s; minus what was in use before it started), as one Markdown table row.
On stderr, what the RSS was made of at its sampled peak (/proc/PID/status of the command itself,
polled every 0.2 s): anonymous memory (heap, pinned buffers), file pages (mapped model files and
libraries: the CUDA libraries' mapped code counts here) and shared memory; and the largest mappings
at that peak by resident size (/proc/PID/smaps, summed per file; "[anonymous]" for unnamed ones),
so a peak can be traced to what holds it. MEASURE_TRACE=SECONDS also prints, every SECONDS, the
elapsed time, anonymous and file RSS and the largest file mapping (to place a peak in the run).

usage: measure.py LABEL -- COMMAND [ARGS...]
"""
import os
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


def rss_parts(pid):
    """(RssAnon, RssFile, RssShmem) in bytes, or None once the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f if line.startswith("Rss"))
        return tuple(int(fields[k].split()[0]) * 1024 for k in ("RssAnon", "RssFile", "RssShmem"))
    except (OSError, KeyError, ValueError):
        return None


def mappings(pid):
    """{mapping name: resident bytes} from /proc/PID/smaps, or None once the process is gone."""
    try:
        with open(f"/proc/{pid}/smaps") as f:
            lines = f.readlines()
    except OSError:
        return None
    rss, name = {}, None
    for line in lines:
        head = line.split(None, 1)[0]
        if not head.endswith(":"):  # a mapping's header line: range perms offset dev inode [path]
            fields = line.split(None, 5)
            name = fields[5].strip() if len(fields) > 5 and fields[5].strip() else "[anonymous]"
        elif head == "Rss:":
            rss[name] = rss.get(name, 0) + int(line.split()[1]) * 1024
    return rss


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
    child = subprocess.Popen(command)
    parts_peak = [None]
    maps_peak = [None, 0]  # the mappings at the last peak that grew by 32 MB or more, and its total

    trace = float(os.environ.get("MEASURE_TRACE", "0"))
    next_trace = [start + trace]

    def poll_rss():
        while child.poll() is None:
            if trace > 0 and time.time() >= next_trace[0]:
                next_trace[0] += trace
                parts, maps = rss_parts(child.pid), mappings(child.pid)
                if parts and maps:
                    files = [(n, v) for n, v in maps.items() if n.startswith("/")]
                    name, size = max(files, key=lambda kv: kv[1]) if files else ("-", 0)
                    print(f"measure.py: {time.time() - start:7.1f} s anonymous {parts[0] / 1e9:.2f} GB file "
                          f"{parts[1] / 1e9:.2f} GB, largest file {name} {size / 1e9:.3f} GB", file=sys.stderr, flush=True)
            parts = rss_parts(child.pid)
            if parts and (parts_peak[0] is None or sum(parts) > sum(parts_peak[0])):
                parts_peak[0] = parts
                if sum(parts) > maps_peak[1] + (32 << 20):  # smaps is slow to read: only on real growth
                    maps = mappings(child.pid)
                    if maps:
                        maps_peak[0], maps_peak[1] = maps, sum(parts)
            time.sleep(0.2)

    sampler = threading.Thread(target=poll_rss, daemon=True)
    sampler.start()
    rc = child.wait()
    wall = time.time() - start
    done.set()
    sampler.join()
    if parts_peak[0]:
        anon, file_, shmem = (v / 1e9 for v in parts_peak[0])
        print(f"measure.py: at the sampled RSS peak: anonymous {anon:.2f} GB, file {file_:.2f} GB, shared {shmem:.2f} GB",
              file=sys.stderr, flush=True)
    if maps_peak[0]:
        top = sorted(maps_peak[0].items(), key=lambda kv: -kv[1])[:8]
        print("measure.py: largest mappings then: " + "; ".join(f"{name} {size / 1e9:.3f} GB" for name, size in top),
              file=sys.stderr, flush=True)
    rss_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / 1e9
    gpu = f"{(peak[0] - base) / 1024:.1f} GiB" if base is not None else "-"
    print(f"| {label} | {wall:.0f} s | {rss_gb:.2f} GB | {gpu} | exit {rc} |", flush=True)
    sys.exit(rc)


if __name__ == "__main__":
    main()

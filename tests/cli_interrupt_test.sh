#!/usr/bin/env bash
# CTest's cli_interrupt: SIGINT or SIGTERM in the middle of `autoround quantize` stops it with
# status 128 + signal, and leaves neither the output directory nor its staging directory
# (DIR.partial) nor, stopped before a block finished, DIR.resume; an existing output directory
# (--overwrite) is left as it was.
# usage: cli_interrupt_test.sh AUTOROUND ASSETS_DIR WORK_DIR
set -euo pipefail
set -m  # job control: the background run gets SIGINT as a foreground one would (not ignored)
autoround=$1 assets=$2 work=$3
if [ ! -f "$assets/smollm2-135m-instruct-q4_1.gguf" ]; then
  echo "cli_interrupt: assets missing (scripts/fetch-assets.sh)"
  if [ -n "${CI:-}" ]; then exit 1; else exit 77; fi
fi
rm -rf "$work" && mkdir -p "$work/previous"
pid=
trap 'if [ -n "$pid" ]; then kill -9 $pid 2>/dev/null || true; fi' EXIT  # a failed check leaves no run behind (--iters 100000)
echo "an earlier run's output" >"$work/previous/keep.txt"
for signal in INT TERM; do
  for out in "$work/new" "$work/previous"; do
    rm -f "$work/log"  # the run's shell truncates it after the fork: the last run's "step" must not be read as this one's
    "$autoround" quantize --model "$assets/smollm2-135m-instruct-q4_1.gguf" --calibration "$assets/kjv-calib.tokens" \
      --iters 100000 --nsamples 2 --seqlen 32 --batch-size 2 --format auto_round,gguf:q4_0 --output "$out" --overwrite \
      >"$work/log" 2>&1 &
    pid=$!
    # wait until it is tuning (the progress bar shows), then interrupt it; by the clock, and only
    # while the run is alive
    deadline=$((SECONDS + 120))
    until grep -q "step" "$work/log" 2>/dev/null; do
      if ! kill -0 $pid 2>/dev/null; then
        status=0
        wait $pid || status=$?
        echo "cli_interrupt: the run ended (status $status) before tuning"; cat "$work/log"; exit 1
      fi
      [ $SECONDS -lt $deadline ] || { echo "cli_interrupt: the run never started tuning (120 s)"; cat "$work/log"; exit 1; }
      sleep 0.1
    done
    kill -s $signal $pid
    status=0
    wait $pid || status=$?
    expected=$((128 + $(kill -l $signal)))
    [ $status -eq $expected ] || { echo "cli_interrupt: SIG$signal gave status $status, expected $expected"; cat "$work/log"; exit 1; }
    [ ! -e "$out.partial" ] || { echo "cli_interrupt: SIG$signal left $out.partial"; exit 1; }
    # stopped in its first block: nothing finished, so nothing to resume either
    [ ! -e "$out.resume" ] || { echo "cli_interrupt: SIG$signal left $out.resume with no finished block"; exit 1; }
    if [ "$out" = "$work/new" ]; then
      [ ! -e "$out" ] || { echo "cli_interrupt: SIG$signal left $out"; exit 1; }
    else
      [ "$(cat "$out/keep.txt")" = "an earlier run's output" ] || { echo "cli_interrupt: SIG$signal changed $out"; exit 1; }
    fi
  done
done
echo "cli_interrupt: SIGINT and SIGTERM stop the run; no output or staging directory left, an earlier output kept"
rm -rf "$work"

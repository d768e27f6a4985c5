#!/usr/bin/env bash
# CTest's cli_resume: `autoround quantize` killed in the middle of a block (SIGKILL: nothing runs
# on its way out; SIGTERM: it stops itself), at a random block of a random tuning run, then run
# again with --resume, writes byte for byte the files an uninterrupted run writes (every file but
# quantization_report.json, whose timings differ), and tunes only the blocks it had not finished.
# Two tuning runs (auto_round W4G128 asym, then gguf:q4_0's W4G32 sym), so a kill in the second
# also checks that the first is replayed whole.
# usage: cli_resume_test.sh AUTOROUND ASSETS_DIR WORK_DIR [SEED]
set -euo pipefail
autoround=$1 assets=$2 work=$3
seed=${4:-$$}
RANDOM=$seed
echo "cli_resume: seed $seed (pass it as the fourth argument to repeat this run's choices)"
model=$assets/smollm2-135m-6l.gguf  # the asset cut to 6 blocks: six kill points a run
if [ ! -f "$model" ]; then
  echo "cli_resume: assets missing (scripts/fetch-assets.sh)"
  if [ -n "${CI:-}" ]; then exit 1; else exit 77; fi
fi
rm -rf "$work" && mkdir -p "$work"
# (--clip-init unit: the clipping search is a function of the block's inputs, which the replay
# restores; with it and 2 steps instead of 3 the test took 45 s instead of 143 s on 2 cores)
settings=(--model "$model" --calibration "$assets/kjv-calib.tokens" --nsamples 4 --seqlen 64 --batch-size 2 --iters 2
          --clip-init unit --format auto_round,gguf:q4_0)
quantize() { "$autoround" quantize "${settings[@]}" "$@"; }
same_files() {  # every file of $1 in $2, the same bytes, and no other file
  local a=$1 b=$2
  diff <(cd "$a" && find . -type f ! -name quantization_report.json | sort) <(cd "$b" && find . -type f ! -name quantization_report.json | sort)
  (cd "$a" && find . -type f ! -name quantization_report.json) | while read -r f; do cmp "$a/$f" "$b/$f"; done
}
quantize --output "$work/whole" >"$work/whole.log" 2>&1
for signal in KILL TERM; do
  run=$((RANDOM % 2 + 1)) block=$((RANDOM % 3 + 2))
  out=$work/cut-$signal
  "$autoround" quantize "${settings[@]}" --output "$out" >"$work/$signal.log" 2>&1 &  # the program itself: $! is its pid
  pid=$!
  # kill it while block $block of run $run tunes: once block $((block - 1)) is kept
  kept=$(printf "%s.resume/run-%d/block-%05d.safetensors" "$out" "$run" $((block - 1)))
  # (up to 10 min: a loaded 2-core machine runs the blocks slowly; the loop ends when the run dies)
  for _ in $(seq 1 12000); do [ -f "$kept" ] && break; kill -0 $pid 2>/dev/null || break; sleep 0.05; done
  [ -f "$kept" ] || { echo "cli_resume: the run never kept $kept"; cat "$work/$signal.log"; exit 1; }
  kill -s $signal $pid
  status=0
  wait $pid || status=$?
  [ $status -eq $((128 + $(kill -l $signal))) ] || { echo "cli_resume: SIG$signal gave status $status"; cat "$work/$signal.log"; exit 1; }
  [ ! -e "$out" ] || { echo "cli_resume: SIG$signal left a half-written $out"; exit 1; }
  [ -d "$out.resume" ] || { echo "cli_resume: SIG$signal lost the finished blocks"; exit 1; }
  finished=$(ls "$out.resume/run-$run" | grep -c '^block-.*\.safetensors$')
  if [ $signal = TERM ]; then grep -q -- "--resume continues after them" "$work/$signal.log" || { echo "cli_resume: SIGTERM did not say how to resume"; cat "$work/$signal.log"; exit 1; }; fi
  # without --resume the kept blocks are not thrown away silently
  if quantize --output "$out" >"$work/$signal-refused.log" 2>&1; then echo "cli_resume: a second run ignored $out.resume"; exit 1; fi
  grep -q "pass --resume to continue it" "$work/$signal-refused.log" || { cat "$work/$signal-refused.log"; exit 1; }
  quantize --output "$out" --resume >"$work/$signal-resumed.log" 2>&1 || { echo "cli_resume: the resumed run failed"; cat "$work/$signal-resumed.log"; exit 1; }
  grep -q "resuming: blocks 1-$finished of 6" "$work/$signal-resumed.log" || { echo "cli_resume: the resumed run did not skip $finished blocks of run $run"; cat "$work/$signal-resumed.log"; exit 1; }
  same_files "$work/whole" "$out" || { echo "cli_resume: SIG$signal at run $run block $block: the resumed output differs"; exit 1; }
  [ ! -e "$out.resume" ] || { echo "cli_resume: the finished run left $out.resume"; exit 1; }
  echo "cli_resume: SIG$signal during run $run block $block ($finished blocks kept): resumed output identical"
done
rm -rf "$work"

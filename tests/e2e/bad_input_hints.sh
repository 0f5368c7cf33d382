#!/usr/bin/env bash
# Inputs that used to mislead (docs/HARDENING.md rows 67-75): each ends with
# one line that says what happened and what to do, and where the line
# suggests a change, the test makes that change and the run must work.
BUILD=$1 SRC=$2
source "$SRC/tests/support/e2e_lib.sh"
MK="$BUILD/tests/rt_mkh5"
work=$(mktemp -d "$BUILD/hints.XXXX")
holder=
cleanup() {
  [ -z "$holder" ] || kill "$holder" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"

printf 'input 3 8 8\nconv 8 3 same relu\nmaxpool 2\nflatten\ndense 4\nloss softmax_cross_entropy\n' >net.spec
"$MK" create d.h5 images:f32:512x3x8x8:learn=4 labels:u8:512:mod=4
C=(train --log-every 0 --progress none --batch-size 32)
# works WHAT -- ringtrain args: the run (NP ranks, default 2) must succeed.
works() {
  local what=$1
  shift 2
  rt_mpirun "${NP:-2}" "$@" >works.log 2>&1 || fail "$what does not work: $(cat works.log)"
  echo "ok: $what works"
}
dir_sum() { (cd "$1" && find . -type f | sort | xargs md5sum); }

echo "--- a model spec saved with a UTF-8 byte-order mark"
printf '\xef\xbb\xbf' | cat - net.spec >bom.spec
works "a spec that starts with a BOM" -- "${C[@]}" --data d.h5 --model bom.spec --epochs 1

echo "--- resume with a spec whose shapes match but whose layers differ"
rt_mpirun 2 "${C[@]}" --data d.h5 --model net.spec --epochs 1 --checkpoint-dir ck >ck.log 2>&1 || fail "$(cat ck.log)"
sed 's/relu/tanh/' net.spec >tanh.spec
before=$(dir_sum ck)
expect_error "ck/ckpt-000000016.h5: written for a different model spec: line 2 of this spec is 'conv 8 3 same tanh', the checkpoint's 'conv 8 3 same relu'; resume with the spec it was trained with, or start from its weights with --init-from" 1 -- \
  "${C[@]}" --data d.h5 --model tanh.spec --epochs 2 --resume ck
[ "$(dir_sum ck)" = "$before" ] || fail "the refused resume changed the checkpoint directory"
works "the hint --init-from" -- "${C[@]}" --data d.h5 --model tanh.spec --epochs 1 --init-from ck
# comments, blank lines and spacing are not the model
{ echo "# the same model"; sed 's/ /  /g; s/$/   # note/' net.spec; echo; } >same.spec
works "resuming with the same layers written differently" -- "${C[@]}" --data d.h5 --model same.spec --epochs 2 --resume ck

echo "--- resume from an int8 file of 'ringtrain quantize'"
rt_mpirun 2 quantize --checkpoint ck --calib-data d.h5 --calib-samples 64 --out q8.h5 >q.log 2>&1 ||
  fail "quantize: $(cat q.log)"
expect_error "q8.h5: an int8 deployment file made by 'ringtrain quantize', not a training checkpoint; it cannot be resumed (eval and predict take it): resume from the float checkpoint it was made from" 1 -- \
  "${C[@]}" --data d.h5 --model net.spec --epochs 2 --resume q8.h5
works "eval on the int8 file" -- eval --checkpoint q8.h5 --data d.h5
works "resuming from the float checkpoint" -- "${C[@]}" --data d.h5 --model net.spec --epochs 2 --resume ck/ckpt-000000016.h5

echo "--- a data file another program holds open for writing"
cp d.h5 held.h5
"$MK" hold held.h5 60 >hold.log &
holder=$!
for _ in $(seq 100); do grep -q holding hold.log && break; sleep 0.1; done
grep -q holding hold.log || fail "rt_mkh5 hold did not start"
expect_error "held.h5: another program has this file open for writing (HDF5 file lock held); let it finish and close the file (h5py: f.close()), then run again" 1 -- \
  "${C[@]}" --data held.h5 --model net.spec --epochs 1
kill "$holder"
wait "$holder" 2>/dev/null || true
holder=
works "the same run once the writer has closed the file" -- "${C[@]}" --data held.h5 --model net.spec --epochs 1

echo "--- too few samples: each hint leads to a run"
"$MK" create one.h5 images:f32:1x3x8x8 labels:u8:1
expect_error "one.h5: 1 training sample(s) are fewer than the 2 ranks (every rank takes at least one sample a step); run on at most 1 rank(s) with --batch-size 1 or less" 1 -- \
  train --log-every 0 --model net.spec --data one.h5 --batch-size 8
NP=1 works "1 rank, --batch-size 1" -- train --log-every 0 --model net.spec --data one.h5 --batch-size 1
"$MK" create five.h5 images:f32:5x3x8x8 labels:u8:5
expect_error "five.h5: 5 training samples are fewer than one global batch of 8; lower --batch-size to 5 or less" 1 -- \
  train --log-every 0 --model net.spec --data five.h5 --batch-size 8
works "--batch-size 5" -- train --log-every 0 --model net.spec --data five.h5 --batch-size 5
expect_error "d.h5: --val-fraction 1 holds out 512 of the 512 samples, leaving 0 for training, fewer than one global batch of 32; lower --val-fraction to 0.9375 or less (or --batch-size)" 1 -- \
  "${C[@]}" --data d.h5 --model net.spec --val-fraction 1
works "--val-fraction 0.9375" -- "${C[@]}" --data d.h5 --model net.spec --epochs 1 --val-fraction 0.9375
expect_error "--batch-size 1 is smaller than the number of ranks (2); the global batch is split across ranks: use --batch-size 2 or more, or fewer ranks" 1 -- \
  train --log-every 0 --model net.spec --data d.h5 --batch-size 1
works "--batch-size 2" -- train --log-every 0 --model net.spec --data d.h5 --batch-size 2 --train-limit 8

echo "--- a bad --checkpoint-dir is found at start-up, not after an epoch"
echo x >afile
expect_error "checkpoint directory 'afile' exists and is not a directory" 1 -- \
  "${C[@]}" --data d.h5 --model net.spec --epochs 1 --checkpoint-dir afile --metrics m.jsonl
! grep -q "epoch 1/1" out || fail "trained before the checkpoint directory was checked: $(cat out)"
if command -v setpriv >/dev/null; then
  mkdir -p locked
  chmod 555 locked
  RT_WRAP="setpriv --bounding-set -dac_override,-dac_read_search" \
    expect_error "locked: cannot write checkpoints in this directory: Permission denied" 1 -- \
    "${C[@]}" --data d.h5 --model net.spec --epochs 1 --checkpoint-dir locked --metrics m.jsonl
  ! grep -q "epoch 1/1" out || fail "trained before the checkpoint directory was checked: $(cat out)"
fi
expect_error "nodir/e.jsonl: cannot open the --json file: No such file or directory" 1 -- \
  eval --checkpoint ck --data d.h5 --json nodir/e.jsonl
! grep -q "top-1" out || fail "evaluated before the --json file was opened: $(cat out)"

echo "--- predict without labels; eval --json names the checkpoint's step"
"$MK" create nolabels.h5 images:f32:512x3x8x8:learn=4
rt_mpirun 1 predict --checkpoint ck --data nolabels.h5 --limit 6 >p_nolab.txt 2>&1 ||
  fail "predict on a file without labels: $(cat p_nolab.txt)"
rt_mpirun 1 predict --checkpoint ck --data d.h5 --limit 6 >p_lab.txt 2>&1 || fail "$(cat p_lab.txt)"
[ "$(grep -c ' class ' p_nolab.txt)" -eq 6 ] || fail "$(cat p_nolab.txt)"
! grep -q -e label -e accuracy p_nolab.txt || fail "labels invented: $(cat p_nolab.txt)"
diff <(sed 's/  label .*//' p_lab.txt | grep ' class ') p_nolab.txt >/dev/null ||
  fail "predictions differ with and without labels"
echo "ok: predict runs on a file without labels"
NP=1 expect_error "nolabels.h5: dataset 'labels' not found (available: images); use --y-name" 1 -- \
  predict --checkpoint ck --data nolabels.h5 --y-name labels
rt_mpirun 2 "${C[@]}" --data d.h5 --model net.spec --epochs 2 --checkpoint-dir mid --checkpoint-every 24 >mid.log 2>&1 ||
  fail "$(cat mid.log)"
rt_mpirun 2 eval --checkpoint mid/ckpt-000000024.h5 --data d.h5 --json ev.jsonl >/dev/null 2>&1 || fail "eval --json"
rt_mpirun 2 eval --checkpoint mid/ckpt-000000032.h5 --data d.h5 --json ev.jsonl >/dev/null 2>&1 || fail "eval --json"
grep -q '"step":24,"epoch":1.5,' <(sed -n 1p ev.jsonl) || fail "eval --json of step 24: $(head -c 200 ev.jsonl)"
grep -q '"step":32,"epoch":2,' <(sed -n 2p ev.jsonl) || fail "eval --json of step 32: $(sed -n 2p ev.jsonl | head -c 200)"
echo "ok: eval --json writes the checkpoint's step and epoch"
echo "PASS: bad_input_hints ($n_ok messages, every hint followed)"

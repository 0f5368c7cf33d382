#!/usr/bin/env bash
# Every bad input of docs/HARDENING.md's table: the job (2 ranks) ends with
# exactly one line starting with "ringtrain" on stderr that names what was
# wrong and where, the documented exit code, no crash, no hang, and no
# checkpoint already on disk is changed. Files are built with rt_mkh5.
BUILD=$1 SRC=$2
source "$SRC/tests/support/e2e_lib.sh"
MK="$BUILD/tests/rt_mkh5"
work=$(mktemp -d "$BUILD/badmore.XXXX")
cleanup() {
    for m in "$work/ro" "$work/full"; do mountpoint -q "$m" 2>/dev/null && umount "$m"; done
    rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
n_ok=0

# The sum of every file of a checkpoint directory, to prove it unchanged.
dir_sum() { (cd "$1" && find . -type f -name 'ckpt-*' -o -name latest | sort | xargs md5sum); }

T=(train --log-every 0 --epochs 1 --batch-size 8)
printf 'input 16\ndense 3\nloss softmax_cross_entropy\n' >tiny.spec
"$MK" create ok.h5 images:f32:64x16 labels:u8:64

echo "--- data files"
mkdir -p adir
expect_error "adir: cannot open: Is a directory" 1 -- "${T[@]}" --model tiny.spec --data adir
echo 'not hdf5' >text.h5
expect_error "text.h5: not an HDF5 file" 1 -- "${T[@]}" --model tiny.spec --data text.h5
cp ok.h5 trunc.h5
truncate -s 3000 trunc.h5
expect_error "trunc.h5: cannot open as HDF5 (truncated file" 1 -- "${T[@]}" --model tiny.spec --data trunc.h5
if command -v setpriv >/dev/null; then
    # root reads anything; without CAP_DAC_OVERRIDE mode 000 is unreadable.
    cp ok.h5 noperm.h5
    chmod 000 noperm.h5
    RT_WRAP="setpriv --bounding-set -dac_override,-dac_read_search" \
        expect_error "noperm.h5: cannot open: Permission denied" 1 -- "${T[@]}" --model tiny.spec --data noperm.h5
fi

echo "--- schema"
expect_error "dataset 'imgs' not found (available: images, labels); use --x-name" 1 -- \
    "${T[@]}" --model tiny.spec --data ok.h5 --x-name imgs
"$MK" create rank1.h5 images:f32:64 labels:u8:64
expect_error "dataset 'images' has shape (64,), expected (N, d1[, d2, ...])" 1 -- \
    "${T[@]}" --model tiny.spec --data rank1.h5
"$MK" create shape.h5 images:f32:64x4x4x2 labels:u8:64
expect_error "samples have 32 values each but the model's input takes 16" 1 -- \
    "${T[@]}" --model tiny.spec --data shape.h5
"$MK" create yshape.h5 images:f32:64x16 labels:u8:64x3
expect_error "dataset 'labels' has shape (64, 3), expected (N,) or (N,1)" 1 -- \
    "${T[@]}" --model tiny.spec --data yshape.h5
"$MK" create strx.h5 images:str:64x16 labels:u8:64
expect_error "dataset 'images' has unsupported dtype string" 1 -- "${T[@]}" --model tiny.spec --data strx.h5
"$MK" create fy.h5 images:f32:64x16 labels:f32:64
expect_error "dataset 'labels' has dtype float32, expected an integer type" 1 -- \
    "${T[@]}" --model tiny.spec --data fy.h5
"$MK" create count.h5 images:f32:64x16 labels:u8:60
expect_error "dataset 'images' has 64 samples but dataset 'labels' has 60 labels" 1 -- \
    "${T[@]}" --model tiny.spec --data count.h5
"$MK" create neg.h5 images:f32:64x16 labels:i16:64:set=7=-1
expect_error "dataset 'labels': label -1 at index 7 is out of range [0, 3)" 1 -- \
    "${T[@]}" --model tiny.spec --data neg.h5
"$MK" create big.h5 images:f32:64x16 labels:u8:64:set=50=3
expect_error "dataset 'labels': label 3 at index 50 is out of range [0, 3)" 1 -- \
    "${T[@]}" --model tiny.spec --data big.h5
"$MK" create nan.h5 images:f32:64x16:nan=40 labels:u8:64
expect_error "dataset 'images': sample 2 has NaN at element 8" 1 -- "${T[@]}" --model tiny.spec --data nan.h5
"$MK" create inf.h5 images:f64:64x16:inf=100 labels:u8:64
expect_error "dataset 'images': sample 6 has Inf" 1 -- "${T[@]}" --model tiny.spec --data inf.h5
"$MK" create empty.h5 images:f32:0x16 labels:u8:0
expect_error "dataset 'images' is empty (shape (0, 16))" 1 -- "${T[@]}" --model tiny.spec --data empty.h5
"$MK" create one.h5 images:f32:1x16 labels:u8:1
NP=3 expect_error "one.h5: 1 training sample(s) are fewer than the 3 ranks (every rank takes at least one sample a step); run on at most 1 rank(s) with --batch-size 1 or less" 1 -- \
    train --log-every 0 --model tiny.spec --data one.h5 --batch-size 3
"$MK" create five.h5 images:f32:5x16 labels:u8:5
expect_error "five.h5: 5 training samples are fewer than one global batch of 8; lower --batch-size to 5 or less" 1 -- \
    "${T[@]}" --model tiny.spec --data five.h5

echo "--- model spec"
spec_case() { # spec_case WANT TEXT
    printf "$2\n" >case.spec
    expect_error "$1" 1 -- "${T[@]}" --model case.spec --data ok.h5
}
spec_case "case.spec:2: unknown layer 'dense2'" 'input 16\ndense2 3\nloss softmax_cross_entropy'
spec_case "case.spec:2: expected a positive integer for units, got '3x'" 'input 16\ndense 3x\nloss softmax_cross_entropy'
spec_case "case.spec:2: dense: missing number of units" 'input 16\ndense\nloss softmax_cross_entropy'
spec_case "case.spec:2: dense needs a flat input but gets (1,8,8); add 'flatten' before it" \
    'input 1 8 8\ndense 3\nloss softmax_cross_entropy'
spec_case "case.spec:2: maxpool window 9 is larger than its input (1,8,8)" \
    'input 1 8 8\nmaxpool 9\nflatten\ndense 3\nloss softmax_cross_entropy'
spec_case "case.spec:3: the model has no 'loss' line" 'input 16\ndense 3'
spec_case "case.spec: the memory plan needs 4.2 TiB, more than --max-memory" \
    'input 16\ndense 16000000\ndense 16000\nloss softmax_cross_entropy'
grep -qF "the biggest part is optimizer state (1.9 TiB): shard it across ranks with --shard-optimizer" err ||
    fail "the refusal does not name the biggest part: $(cat err)"

echo "--- checkpoints"
"$MK" create w.h5 images:u8:256x1024:mod=7 labels:u8:256
printf 'input 1024\ndense 3\nloss softmax_cross_entropy\n' >wide.spec
W=(train --log-every 0 --model wide.spec --data w.h5 --batch-size 16)
rt_mpirun 2 "${W[@]}" --epochs 1 --checkpoint-dir ck >/dev/null
ck="ck/$(cat ck/latest)"
before=$(dir_sum ck)
printf 'input 1024\ndense 4\ndense 3\nloss softmax_cross_entropy\n' >other.spec
expect_error "tensor 'dense1.weight' has shape (3,1024) in the checkpoint but (4,1024) in the model; it was written for a different model spec" 1 -- \
    train --log-every 0 --model other.spec --data w.h5 --batch-size 16 --epochs 2 --resume "$ck"
cp "$ck" trunc_ck.h5
truncate -s 2000 trunc_ck.h5
expect_error "trunc_ck.h5: cannot open as HDF5, the file is truncated or damaged" 1 -- \
    "${W[@]}" --epochs 2 --resume trunc_ck.h5
cp "$ck" version.h5
"$MK" attr version.h5 format_version 7
expect_error "version.h5: written by format version 7, this build reads 1" 1 -- \
    "${W[@]}" --epochs 2 --resume version.h5
cp "$ck" noopt.h5
"$MK" unlink noopt.h5 /optim
expect_error "noopt.h5: optimizer state /optim/m is missing" 1 -- "${W[@]}" --epochs 2 --resume noopt.h5
cp "$ck" nov.h5
"$MK" unlink nov.h5 /optim/v/dense1.bias
expect_error "nov.h5: optimizer state /optim/v/dense1.bias is missing" 1 -- "${W[@]}" --epochs 2 --resume nov.h5
expect_error "optimizer state is for adam, this run uses sgd" 1 -- \
    "${W[@]}" --epochs 2 --resume "$ck" --optimizer sgd
expect_error "w.h5: not a ringtrain checkpoint (no format_version attribute)" 1 -- \
    "${W[@]}" --epochs 2 --resume w.h5
mkdir -p empty_dir
expect_error "empty_dir: no checkpoint here (no ckpt-*.h5 files)" 1 -- "${W[@]}" --resume empty_dir
[ "$(dir_sum ck)" = "$before" ] || fail "a failed resume changed the checkpoint directory"

echo "--- checkpoint directory not writable, disk full"
echo x >afile
expect_error "cannot create checkpoint directory 'afile/ck': Not a directory" 1 -- \
    "${W[@]}" --epochs 1 --checkpoint-dir afile/ck
mkdir -p ro full
if mount -t tmpfs -o ro,size=64k tmpfs ro 2>/dev/null; then
    expect_error "cannot create checkpoint directory 'ro/ck': Read-only file system" 1 -- \
        "${W[@]}" --epochs 1 --checkpoint-dir ro/ck
    umount ro
    # One 51 KiB checkpoint fits in 80 KiB, the second does not.
    mount -t tmpfs -o size=80k tmpfs full
    expect_error "cannot write 53368 bytes: No space left on device; the checkpoint was not written (previous ones are kept)" 1 -- \
        "${W[@]}" --epochs 1 --checkpoint-dir full --checkpoint-every 4
    # the temporary file is the writer's own (its pid in the name)
    grep -qE "full/ckpt-000000008\.h5\.tmp\.[0-9]+: cannot write" err || fail "tmp name: $(cat err)"
    [ "$(cat full/latest)" = ckpt-000000004.h5 ] || fail "latest moved: $(cat full/latest)"
    ! ls full/*.tmp* 2>/dev/null || fail "a .tmp file was left on the full disk"
    cp full/ckpt-000000004.h5 full4.h5
    umount full
    rt_mpirun 2 "${W[@]}" --epochs 1 --resume full4.h5 >resumed.log ||
        fail "the checkpoint kept on the full disk does not resume"
    grep -q "resuming from full4.h5 (epoch 1, step 4)" resumed.log || fail "$(cat resumed.log)"
    echo "ok: the checkpoint before the full disk resumes"
else
    echo "note: cannot mount tmpfs here (not root?); read-only and disk-full cases skipped"
fi

echo "--- a read error in the middle of training"
# Chunked gzip + fletcher32 float32 file (4 KiB a sample, in the loader too);
# chunk 60 (samples 3840..3903, rank 1's shard) is overwritten. The loader
# streams (1 MiB cap), so the bad chunk is first read at step 58 of seed 3,
# after checkpoints at steps 5..55.
"$MK" create bad_mid.h5 --chunk 64 --gzip images:f32:4000x1x32x32:mod=7 labels:u8:4000 >/dev/null
"$MK" corrupt bad_mid.h5 images 60 >/dev/null
expect_error "rank 1: step 58: bad_mid.h5: dataset 'images': read of samples [3824, 3881) failed (inflate() failed); is the file truncated or corrupted?" 1 -- \
    train --log-every 0 --model wide.spec --data bad_mid.h5 --batch-size 16 --epochs 3 --loader-mem 1 \
    --seed 3 --checkpoint-dir mid --checkpoint-every 5
[ "$(cat mid/latest)" = ckpt-000000055.h5 ] || fail "latest is $(cat mid/latest)"
h5dump -A mid/ckpt-000000055.h5 >/dev/null || fail "checkpoint before the read error is damaged"

echo "--- flags"
expect_error "unknown flag '--epoch' (did you mean --epochs?)" 2 -- "${T[@]}" --model tiny.spec --data ok.h5 --epoch 3
expect_error "--seed needs a value (N)" 2 -- "${T[@]}" --model tiny.spec --data ok.h5 --seed
expect_error "--epochs expects a positive integer, got '1.5'" 2 -- \
    train --model tiny.spec --data ok.h5 --epochs 1.5
expect_error "--lr expects a positive number, got 'fast'" 2 -- "${T[@]}" --model tiny.spec --data ok.h5 --lr fast
expect_error "--model FILE is required" 2 -- train --data ok.h5
expect_error "unexpected argument 'extra' (flags start with --)" 2 -- "${T[@]}" --model tiny.spec --data ok.h5 extra
expect_error "--epochs given twice" 2 -- "${T[@]}" --model tiny.spec --data ok.h5 --epochs 2
expect_error "--batch-size 1 is smaller than the number of ranks (2)" 1 -- \
    train --model tiny.spec --data ok.h5 --batch-size 1
expect_error "--checkpoint-every needs --checkpoint-dir" 2 -- "${T[@]}" --model tiny.spec --data ok.h5 --checkpoint-every 3
expect_error "--resume auto needs --checkpoint-dir" 2 -- "${T[@]}" --model tiny.spec --data ok.h5 --resume auto
expect_error "--momentum applies to --optimizer sgd only" 2 -- \
    "${T[@]}" --model tiny.spec --data ok.h5 --optimizer adam --momentum 0.5
expect_error "unknown optimizer 'rmsprop'; expected sgd, adam or adamw" 2 -- \
    "${T[@]}" --model tiny.spec --data ok.h5 --optimizer rmsprop
expect_error "--shard-optimizer expects off, node (or on) or all, got 'maybe'" 2 -- \
    "${T[@]}" --model tiny.spec --data ok.h5 --shard-optimizer maybe
expect_error "--shard-optimizer expects on or off, got 'half'" 2 -- \
    bench step --model tiny.spec --shard-optimizer half
NP=1 expect_error "bench scaling: needs at least 2 ranks" 1 -- bench scaling --model tiny.spec
expect_error "missing.spec" 1 -- bench scaling --model missing.spec
# A global batch that does not divide by the ranks is documented as valid:
# rank 0 takes 3 samples and rank 1 takes 2.
rt_mpirun 2 train --log-every 0 --epochs 1 --model tiny.spec --data ok.h5 --batch-size 5 >b5.log ||
    fail "--batch-size 5 on 2 ranks failed"
grep -q "global batch 5 (3 per rank)" b5.log || fail "$(cat b5.log)"
echo "ok: --batch-size 5 on 2 ranks runs (3 + 2)"
echo "PASS: $n_ok bad inputs each ended with one clear line"

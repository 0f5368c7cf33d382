#!/usr/bin/env bash
# Image files as users bring them (docs/DATA_FORMAT.md): channels-last
# (N, H, W, C) samples are refused for an 'input C H W' model unless
# --layout nhwc or the dataset attribute layout="nhwc" says how to read them,
# and then they train to the same parameters, bit for bit, as the same
# images stored channels-first; float16 files read like float32. The images
# are a tiny learnable set made by rt_mkh5 (learn=4: 4 classes, 3 channels).
BUILD=$1 SRC=$2
source "$SRC/tests/support/e2e_lib.sh"
MK="$BUILD/tests/rt_mkh5"
work=$(mktemp -d "$BUILD/layout.XXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"

printf 'input 3 8 8\nconv 8 3 same relu\nmaxpool 2\nflatten\ndense 4\nloss softmax_cross_entropy\n' >net.spec
L=labels:u8:512:mod=4
"$MK" create nchw.h5 images:f32:512x3x8x8:learn=4 "$L"
"$MK" create nhwc.h5 images:f32:512x8x8x3:learn=4,hwc "$L"
"$MK" create u8_nchw.h5 images:u8:512x3x8x8:learn=4,scale=224 "$L"
"$MK" create u8_nhwc.h5 --chunk 100 --gzip images:u8:512x8x8x3:learn=4,hwc,scale=224 "$L"
"$MK" create half.h5 images:f16:512x3x8x8:learn=4 "$L"
cp nhwc.h5 attr.h5
"$MK" strattr attr.h5 images layout nhwc
cp nhwc.h5 badattr.h5
"$MK" strattr badattr.h5 images layout hwc

# train NAME DATA [flags]: 3 epochs on 2 ranks, test accuracy on the same file.
train() {
  local name=$1 data=$2
  shift 2
  rt_mpirun 2 train --model net.spec --data "$data" --test-data "$data" --epochs 3 \
    --batch-size 32 --log-every 0 --progress none --checkpoint-dir "$name" "$@" >"$name.log" 2>&1 ||
    fail "training on $data failed: $(cat "$name.log")"
  grep -q "test accuracy 100.00%" "$name.log" || fail "$data: $(grep final "$name.log")"
}
same_params() { # same_params DIR_A DIR_B WHAT
  h5diff -q "$1/$(cat "$1/latest")" "$2/$(cat "$2/latest")" /params /params ||
    fail "parameters differ: $3"
  echo "ok: $3: the same parameters bit for bit"
}

echo "--- channels-last without a layout: refused, both shapes named"
expect_error "nhwc.h5: dataset 'images' has samples of shape (8, 8, 3) but the model's input is (3, 8, 8); if they are channels-last images (NHWC, as TensorFlow and most image files store them) pass --layout nhwc" 1 -- \
  train --model net.spec --data nhwc.h5 --epochs 1
expect_error "nhwc.h5: dataset 'images' has samples of shape (8, 8, 3) but the model's input is (3, 8, 8)" 1 -- \
  train --model net.spec --data nchw.h5 --test-data nhwc.h5 --epochs 1
expect_error "nchw.h5: --layout nhwc says the samples of dataset 'images' are channels-last (H, W, C), but they have shape (3, 8, 8)" 1 -- \
  train --model net.spec --data nchw.h5 --layout nhwc --epochs 1
expect_error "badattr.h5: dataset 'images' has a 'layout' attribute of 'hwc'; expected the string \"nchw\" or \"nhwc\"" 1 -- \
  train --model net.spec --data badattr.h5 --epochs 1
expect_error "--layout expects auto, nchw or nhwc, got 'chw'" 2 -- \
  train --model net.spec --data nchw.h5 --layout chw

echo "--- read with a layout: the same training as channels-first"
train ref nchw.h5
train flag nhwc.h5 --layout nhwc
same_params ref flag "--layout nhwc (float32)"
train attr attr.h5
same_params ref attr "attribute layout=\"nhwc\""
train u8ref u8_nchw.h5
train u8flag u8_nhwc.h5 --layout nhwc
same_params u8ref u8flag "--layout nhwc (uint8, chunked and gzip'd)"

echo "--- float16"
train half half.h5
same_params ref half "float16 file (values exact in half precision) vs float32"

echo "--- eval and predict take --layout"
ck="ref/$(cat ref/latest)"
rt_mpirun 2 eval --checkpoint "$ck" --data nhwc.h5 --layout nhwc >eval.log 2>&1 || fail "$(cat eval.log)"
grep -q "top-1 100.00%" eval.log || fail "eval --layout nhwc: $(cat eval.log)"
expect_error "nhwc.h5: dataset 'images' has samples of shape (8, 8, 3) but the model's input is (3, 8, 8)" 1 -- \
  eval --checkpoint "$ck" --data nhwc.h5
rt_mpirun 1 predict --checkpoint "$ck" --data nchw.h5 --limit 40 >p_ref.txt 2>&1 || fail "$(cat p_ref.txt)"
rt_mpirun 1 predict --checkpoint "$ck" --data attr.h5 --limit 40 >p_attr.txt 2>&1 || fail "$(cat p_attr.txt)"
rt_mpirun 1 predict --checkpoint "$ck" --data nhwc.h5 --layout nhwc --limit 40 >p_flag.txt 2>&1 ||
  fail "$(cat p_flag.txt)"
cmp -s p_ref.txt p_attr.txt && cmp -s p_ref.txt p_flag.txt ||
  fail "predict differs between layouts: $(diff p_ref.txt p_flag.txt | head -5)"
grep -q "accuracy 100.00% on 40 samples" p_ref.txt || fail "$(tail -1 p_ref.txt)"
echo "ok: eval and predict read channels-last files with --layout nhwc or the attribute"
expect_error "nhwc.h5: dataset 'images' has samples of shape (8, 8, 3) but the model's input is (3, 8, 8)" 1 -- \
  quantize --checkpoint "$ck" --calib-data nhwc.h5 --out q.h5
rt_mpirun 2 quantize --checkpoint "$ck" --calib-data nhwc.h5 --test-data nhwc.h5 --layout nhwc --out q_flag.h5 \
  >q_flag.log 2>&1 || fail "$(cat q_flag.log)"
rt_mpirun 2 quantize --checkpoint "$ck" --calib-data nchw.h5 --test-data nchw.h5 --out q_ref.h5 >q_ref.log 2>&1 ||
  fail "$(cat q_ref.log)"
h5diff -q q_ref.h5 q_flag.h5 || fail "quantize --layout nhwc calibrated differently"
grep -q "float 100.00%" q_flag.log || fail "$(grep accuracy q_flag.log)"
echo "ok: quantize calibrates and tests on channels-last files with --layout nhwc"
echo "PASS: data_layout ($n_ok refusals, every layout read right)"

#!/usr/bin/env python3
"""Quantise nanodet-g-416.onnx to int8 (Conv only, QDQ) and check it against fp32.

Only the Conv operators are quantised (weights int8 per channel, activations uint8);
everything else, including the head's concatenations and the already-sigmoid scores,
stays fp32. Quantising every operator breaks the scores. Calibration uses real
photographs: the images reference_detect.py reads from the scikit-image and
matplotlib wheels, the other photographs in the scikit-image wheel, and any images
passed with --image (the convert script adds the group photos of
@vladmandic/face-api 1.7.15), each also mirrored.

The check runs both models on the reference images and prints, per image, the
fp32 and int8 detections; it fails when a detection at score >= 0.3 of one model has
no match in the other (same class, IoU >= 0.6, score within 0.1) unless both scores
are within 0.1 of the threshold. It also prints the median inference time of each model
with one intra-op thread.

usage: quantize_int8.py --model FP32 --out INT8 [--wheel W ...] [--image I ...]
Needs onnxruntime (with its quantization tools), onnx, numpy and Pillow.
"""
import argparse
import io
import os
import statistics
import sys
import tempfile
import time
import zipfile

import numpy as np
from PIL import Image, ImageOps
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                      quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_detect as ref  # noqa: E402

# Other photographs in the scikit-image wheel (textures and microscopy left out).
EXTRA_MEMBERS = (
    "skimage/data/motorcycle_left.png",
    "skimage/data/motorcycle_right.png",
    "skimage/data/horse.png",
    "skimage/data/coins.png",
    "skimage/data/color.png",
)
THRESHOLD = 0.3
SCORE_TOLERANCE = 0.1
MATCH_IOU = 0.6


def wheel_images(wheels):
    """name -> PIL image for the reference images and EXTRA_MEMBERS."""
    found = {name: Image.open(io.BytesIO(data)) for name, (_, _, data) in ref.load_images(wheels).items()}
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as z:
            names = set(z.namelist())
            for member in EXTRA_MEMBERS:
                if member in names:
                    found[os.path.basename(member)] = Image.open(io.BytesIO(z.read(member)))
    return found


class Photos(CalibrationDataReader):
    """Feeds each calibration picture, and its mirror image, once."""

    def __init__(self, input_name, images):
        self.items = []
        for img in images:
            rgb = img.convert("RGB")
            for pic in (rgb, ImageOps.mirror(rgb)):
                self.items.append({input_name: ref.preprocess(pic)[0]})
        self.pos = 0

    def get_next(self):
        if self.pos >= len(self.items):
            return None
        self.pos += 1
        return self.items[self.pos - 1]


def median_ms(sess, x, runs=20):
    name = sess.get_inputs()[0].name
    for _ in range(3):
        sess.run(None, {name: x})
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(None, {name: x})
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def matched(det, others):
    c, s, box = det
    for oc, os_, obox in others:
        if oc == c and abs(os_ - s) <= SCORE_TOLERANCE and ref.iou(box, obox[None])[0] >= MATCH_IOU:
            return True
    return False


def compare(fp32, int8, images, labels):
    """Prints both models' detections per image; returns the unmatched ones."""
    problems = []
    worst = 0.0
    for name in ref.IMAGES:
        img = images[name].convert("RGB")
        x, r = ref.preprocess(img)
        w, h = img.size
        dets = []
        for sess in (fp32, int8):
            out = sess.run(None, {sess.get_inputs()[0].name: x})[0]
            dets.append(ref.decode(out, r, w, h, THRESHOLD - SCORE_TOLERANCE))
        a, b = dets
        line = lambda ds: ", ".join(f"{labels[c]} {s:.2f}" for c, s, _ in ds if s >= THRESHOLD) or "-"
        print(f"   {name:13} fp32: {line(a)}\n   {'':13} int8: {line(b)}")
        for mine, theirs, which in ((a, b, "fp32"), (b, a, "int8")):
            for det in mine:
                if det[1] < THRESHOLD:
                    continue
                if not matched(det, theirs):
                    if det[1] < THRESHOLD + SCORE_TOLERANCE:
                        continue  # at the threshold either way
                    problems.append(f"{name}: {which} {labels[det[0]]} {det[1]:.2f} has no match")
        for c, s, box in a:
            for oc, os_, obox in b:
                if oc == c and ref.iou(box, obox[None])[0] >= MATCH_IOU:
                    worst = max(worst, abs(s - os_))
    print(f"   largest score difference on matched boxes: {worst:.3f}")
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="fp32 model")
    ap.add_argument("--out", required=True, help="int8 model to write")
    ap.add_argument("--labels", default=os.path.join(ref.HERE, "coco80.txt"))
    ap.add_argument("--wheel", action="append", default=[], help="wheel to read images from (repeatable)")
    ap.add_argument("--image", action="append", default=[], help="extra calibration image (repeatable)")
    args = ap.parse_args()

    labels = [l.strip() for l in open(args.labels, encoding="utf-8") if l.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        wheels = args.wheel or ref.fetch_wheels(tmp)
        images = wheel_images(wheels)
        calibration = list(images.values()) + [Image.open(p) for p in args.image]
        print(f"== calibrating on {len(calibration)} photographs (and their mirror images)")

        prepared = os.path.join(tmp, "prepared.onnx")
        quant_pre_process(args.model, prepared, skip_symbolic_shape=True)
        fp32 = ref.session(args.model, 1)
        reader = Photos(fp32.get_inputs()[0].name, calibration)
        quantize_static(
            prepared,
            args.out,
            reader,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["Conv"],
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )

    int8 = ref.session(args.out, 1)
    print("== fp32 against int8 on the reference images (score >= 0.3)")
    problems = compare(fp32, int8, images, labels)
    x, _ = ref.preprocess(images["astronaut"].convert("RGB"))
    print(f"== median inference, 1 thread: fp32 {median_ms(fp32, x):.1f} ms, int8 {median_ms(int8, x):.1f} ms")
    if problems:
        print("int8 model differs from fp32:\n  " + "\n  ".join(problems), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()

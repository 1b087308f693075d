"""Preprocess ImageNet validation images the way the MLPerf ResNet-50 reference does.

Input: a directory of JPEGs with `val_map.txt` ("ILSVRC2012_val_00000001.JPEG 65" lines), as
CM's get-dataset-imagenet-val lays it out. Each image: RGB, resized so the shorter side is
256 (bilinear), centre-cropped to 224x224, channel means 123.68/116.78/103.94 subtracted,
NCHW float32. Writes val.npz (x, y) and calib.npz (the first --calib-count images, used by
int8 quantization).
"""

import os
import sys

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

MEANS = np.array([123.68, 116.78, 103.94], dtype=np.float32).reshape(3, 1, 1)


def preprocess(path: str, size: int = 224, resize: int = 256) -> np.ndarray:
    with Image.open(path) as image:
        image = image.convert("RGB")
        width, height = image.size
        scale = resize / min(width, height)
        image = image.resize((max(size, round(width * scale)), max(size, round(height * scale))), Image.BILINEAR)
        width, height = image.size
        left, top = (width - size) // 2, (height - size) // 2
        image = image.crop((left, top, left + size, top + size))
        pixels = np.asarray(image, dtype=np.float32).transpose(2, 0, 1)
    return pixels - MEANS


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", required=True, help="directory with the JPEGs and val_map.txt")
    parser.add_argument("--out-val", required=True)
    parser.add_argument("--out-calib", required=True)
    parser.add_argument("--count", type=int, default=0, help="use only the first N images (0: all)")
    parser.add_argument("--calib-count", type=int, default=100)
    args = parser.parse_args(argv)
    val_map = os.path.join(args.images, "val_map.txt")
    try:
        with open(val_map) as f:
            entries = [line.split() for line in f if line.strip()]
    except OSError as exc:
        print(f"error: cannot read {val_map}: {exc.strerror}; the ImageNet directory needs val_map.txt", file=sys.stderr)
        return 2
    if args.count:
        entries = entries[:args.count]
    x = np.stack([preprocess(os.path.join(args.images, name)) for name, _ in entries])
    y = np.array([int(label) for _, label in entries], dtype=np.int64)
    for path, arrays in ((args.out_val, {"x": x, "y": y}),
                         (args.out_calib, {"x": x[:args.calib_count], "y": y[:args.calib_count]})):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "wb") as f:
            np.savez(f, **arrays)
    print(f"preprocessed {len(y)} images to {x.shape[1:]} NCHW float32")
    return 0


if __name__ == "__main__":
    sys.exit(main())

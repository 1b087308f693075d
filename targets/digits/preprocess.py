"""Split the raw digits npz into normalized NCHW train/val/calibration sets for training, eval and int8."""

import os
import sys
import argparse

import numpy as np


def _save(path: str, **arrays) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:  # a file object keeps np.savez from appending ".npz" to the name
        np.savez(f, **arrays)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, help="input npz from dataset.py (images, labels)")
    parser.add_argument("--out-train", required=True,
                        help="output npz: x (N,1,8,8) float32, y (N,) int64, mean, std")
    parser.add_argument("--out-val", required=True, help="output npz, same keys as --out-train")
    parser.add_argument("--out-calib", required=True, help="output npz, a subset of train, same keys")
    parser.add_argument("--calib-size", type=int, default=100,
                        help="calibration samples taken from train (default 100)")
    parser.add_argument("--val-fraction", type=float, default=0.2, help="stratified validation share (default 0.2)")
    parser.add_argument("--seed", type=int, default=0, help="split and subset seed (default 0)")
    args = parser.parse_args(argv)

    from sklearn.model_selection import train_test_split

    with np.load(args.data) as data:
        images = np.asarray(data["images"], dtype=np.float32)
        labels = np.asarray(data["labels"], dtype=np.int64)
    if images.ndim != 3 or images.shape[1:] != (8, 8) or len(images) != len(labels):
        print(f"preprocess: error: {args.data}: expected images (N,8,8) and labels (N,), got "
              f"{images.shape} and {labels.shape}", file=sys.stderr)
        return 2

    x = (images / 16.0).astype(np.float32)[:, None, :, :]  # NCHW, pixels in [0, 1]
    idx_train, idx_val = train_test_split(
        np.arange(len(labels)), test_size=args.val_fraction, stratify=labels, random_state=args.seed)
    idx_train, idx_val = np.sort(idx_train), np.sort(idx_val)

    # Standardize with statistics of the train split only (no leakage from val).
    mean = np.float32(x[idx_train].mean())
    std = np.float32(x[idx_train].std())
    x = ((x - mean) / std).astype(np.float32)
    stats = {"mean": np.array(mean, dtype=np.float32), "std": np.array(std, dtype=np.float32)}

    calib_size = min(args.calib_size, len(idx_train))
    rng = np.random.default_rng(args.seed)
    idx_calib = np.sort(rng.choice(idx_train, size=calib_size, replace=False))

    for path, idx in ((args.out_train, idx_train), (args.out_val, idx_val), (args.out_calib, idx_calib)):
        _save(path, x=np.ascontiguousarray(x[idx]), y=labels[idx], **stats)
    print(f"preprocess: train {len(idx_train)} -> {args.out_train}, val {len(idx_val)} -> {args.out_val}, "
          f"calib {len(idx_calib)} -> {args.out_calib}; x NCHW float32, mean={float(mean):.4f} std={float(std):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Materialize scikit-learn's bundled digits dataset as an npz, the offline stand-in for a dataset download."""

import os
import sys
import argparse

import numpy as np


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, help="output npz: images (N,8,8) float32, labels (N,) int64")
    args = parser.parse_args(argv)

    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.ascontiguousarray(digits.images, dtype=np.float32)
    labels = np.asarray(digits.target, dtype=np.int64)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "wb") as f:
        np.savez(f, images=images, labels=labels)
    print(f"dataset: wrote {args.out}: images {images.shape} float32 (pixels 0..16), labels {labels.shape} int64, "
          f"{len(np.unique(labels))} classes")
    return 0


if __name__ == "__main__":
    sys.exit(main())

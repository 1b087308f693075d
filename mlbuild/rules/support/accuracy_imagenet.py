"""Score an image classifier's LoadGen accuracy log the way MLPerf's accuracy-imagenet.py does: top-1.

Reads mlperf_log_accuracy.json (one entry per answered sample: qsl_idx and the hex of the
response bytes, here the predicted class), keeps one answer per qsl_idx (LoadGen may issue a sample
more than once), compares each with the ground truth and writes the official line

    accuracy=XX.XXX%, good=N, total=N

to --out (what the submission checker's `acc` pattern reads), plus the same line on stdout.

Ground truth is either an npz with `y` (N,) labels, as the example's preprocessing writes, or
ImageNet's val_map.txt (`<file> <label>` per line, in QSL order). A model trained with a
background class 0 (MLPerf's TF ResNet-50) predicts label + 1: pass --label-offset 1.

Exit codes: 0 scored; 2 unreadable inputs, a sample without ground truth, or a response that is not
one class index.
"""

import sys
import argparse
import json

import numpy as np

DTYPES = {"int64": np.int64, "int32": np.int32, "float32": np.float32}


class CheckerError(Exception):
    pass


def load_ground_truth(path: str) -> np.ndarray:
    try:
        if path.endswith(".npz"):
            with np.load(path) as data:
                if "y" not in data.files:
                    raise CheckerError(f"{path} has no 'y' labels (keys: {data.files})")
                return np.asarray(data["y"], dtype=np.int64)
        with open(path) as f:
            return np.array([int(line.split()[1]) for line in f if line.strip()], dtype=np.int64)
    except (OSError, ValueError, IndexError) as e:
        raise CheckerError(f"cannot read ground truth {path}: {e}") from e


def predictions(path: str, dtype) -> dict[int, int]:
    """qsl_idx -> predicted class, the first answer of each sample (later duplicates are ignored)."""
    try:
        with open(path) as f:
            entries = json.load(f)
    except (OSError, ValueError) as e:
        raise CheckerError(f"cannot read LoadGen's accuracy log {path}: {e}") from e
    found: dict[int, int] = {}
    for entry in entries:
        idx = int(entry["qsl_idx"])
        if idx in found:
            continue
        values = np.frombuffer(bytes.fromhex(entry["data"]), dtype)
        if values.size != 1:
            raise CheckerError(f"{path}: sample {idx} answered {values.size} values of {np.dtype(dtype).name}, "
                               "expected one class index (did the SUT fail on it?)")
        found[idx] = int(values[0])
    if not found:
        raise CheckerError(f"{path} holds no samples: was it written by an accuracy-mode run?")
    return found


def score(log: str, ground_truth: str, label_offset: int = 0, dtype: str = "int64") -> tuple[int, int]:
    labels = load_ground_truth(ground_truth)
    answered = predictions(log, DTYPES[dtype])
    beyond = [idx for idx in answered if idx >= len(labels)]
    if beyond:
        raise CheckerError(f"{log}: {len(beyond)} sample(s) have no ground truth in {ground_truth} "
                           f"(it has {len(labels)} labels; first missing qsl_idx {min(beyond)})")
    good = sum(1 for idx, cls in answered.items() if cls - label_offset == labels[idx])
    return good, len(answered)


def accuracy_line(good: int, total: int) -> str:
    return f"accuracy={100.0 * good / total:.3f}%, good={good}, total={total}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log", required=True, help="mlperf_log_accuracy.json of an accuracy-mode run")
    parser.add_argument("--ground-truth", required=True, help="npz with y, or val_map.txt")
    parser.add_argument("--out", required=True, help="accuracy.txt to write")
    parser.add_argument("--label-offset", type=int, default=0, help="predicted class minus this is the label")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="int64", help="response data type")
    args = parser.parse_args(argv)
    try:
        good, total = score(args.log, args.ground_truth, args.label_offset, args.dtype)
    except CheckerError as e:
        print(f"accuracy_imagenet: error: {e}", file=sys.stderr)
        return 2
    line = accuracy_line(good, total)
    with open(args.out, "w") as f:
        f.write(line + "\n")
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Train a small CNN on the digits until it reaches a target accuracy, logging as MLPerf training does.

The MLPerf training recipe in miniature: a fixed seed, an evaluation after every epoch, and
a stop as soon as the quality target is reached (or an abort after --max-epochs), all in an
MLPerf training log written by `mlperf_logging.mllog`, from which time-to-train is measured.
The network (3x3 conv, 16 channels → ReLU → 2x2 max pool → linear) is plain numpy, so the
same script runs in a venv and in a minimal container image.
"""

import argparse
import io
import sys
import zipfile

import numpy as np
from mlperf_logging import mllog
from mlperf_logging.mllog import constants


class DigitsCNN:
    """conv3x3(1→16, pad 1) → ReLU → maxpool 2x2 → linear(256→10), trained by SGD with momentum."""

    def __init__(self, rng: np.random.Generator, channels: int = 16):
        self.conv = (rng.standard_normal((9, channels)) * np.sqrt(2 / 9)).astype(np.float32)
        self.conv_b = np.zeros(channels, np.float32)
        self.fc = (rng.standard_normal((channels * 16, 10)) * np.sqrt(1 / (channels * 16))).astype(np.float32)
        self.fc_b = np.zeros(10, np.float32)
        self.params = [self.conv, self.conv_b, self.fc, self.fc_b]
        self.velocity = [np.zeros_like(p) for p in self.params]

    @staticmethod
    def patches(x: np.ndarray) -> np.ndarray:
        """(N,1,8,8) → (N,8,8,9): each pixel's 3x3 neighbourhood, zero-padded."""
        padded = np.pad(x[:, 0], ((0, 0), (1, 1), (1, 1)))
        return np.stack([padded[:, i:i + 8, j:j + 8] for i in range(3) for j in range(3)], axis=-1)

    def forward(self, x: np.ndarray):
        cols = self.patches(x)
        pre = cols @ self.conv + self.conv_b  # (N,8,8,C)
        act = np.maximum(pre, 0)
        n, c = len(x), act.shape[-1]
        blocks = act.reshape(n, 4, 2, 4, 2, c)
        pooled = blocks.max(axis=(2, 4))  # (N,4,4,C)
        logits = pooled.reshape(n, -1) @ self.fc + self.fc_b
        return logits, (cols, pre, blocks, pooled)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)[0].argmax(axis=1)

    def step(self, x: np.ndarray, y: np.ndarray, lr: float, momentum: float = 0.9) -> None:
        logits, (cols, pre, blocks, pooled) = self.forward(x)
        n = len(x)
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        probs[np.arange(n), y] -= 1
        d_logits = probs / n
        d_fc = pooled.reshape(n, -1).T @ d_logits
        d_pooled = (d_logits @ self.fc.T).reshape(pooled.shape)
        winners = blocks == pooled[:, :, None, :, None, :]  # route the gradient to each window's max
        d_act = (winners * d_pooled[:, :, None, :, None, :]).reshape(pre.shape)
        d_pre = d_act * (pre > 0)
        d_conv = cols.reshape(-1, 9).T @ d_pre.reshape(-1, d_pre.shape[-1])
        grads = [d_conv, d_pre.sum(axis=(0, 1, 2)), d_fc, d_logits.sum(axis=0)]
        for param, velocity, grad in zip(self.params, self.velocity, grads):
            velocity *= momentum
            velocity -= lr * grad.astype(np.float32)
            param += velocity


def save_weights(path: str, **arrays) -> None:
    """An npz (np.load reads it) whose bytes depend only on the arrays: np.savez stamps the time."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, array in arrays.items():
            data = io.BytesIO()
            np.save(data, array)
            archive.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), data.getvalue())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train", required=True, help="npz with x (N,1,8,8) float32 and y (N,) int64")
    parser.add_argument("--val", required=True, help="npz with the same keys, for the per-epoch evaluation")
    parser.add_argument("--log", required=True, help="the MLPerf training log to write")
    parser.add_argument("--out", required=True, help="the trained weights (npz)")
    parser.add_argument("--target-accuracy", type=float, required=True)
    parser.add_argument("--max-epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    mllog.config(filename=args.log)
    logger = mllog.get_mllogger()
    logger.event(key=constants.CACHE_CLEAR, value=True)
    logger.start(key=constants.INIT_START)
    logger.event(key=constants.SUBMISSION_BENCHMARK, value="digits")
    logger.event(key=constants.SEED, value=args.seed)
    logger.event(key=constants.GLOBAL_BATCH_SIZE, value=args.batch_size)
    logger.event(key=constants.OPT_BASE_LR, value=args.lr)
    rng = np.random.default_rng(args.seed)
    with np.load(args.train) as train, np.load(args.val) as val:
        x_train, y_train, x_val, y_val = train["x"], train["y"], val["x"], val["y"]
    logger.event(key=constants.TRAIN_SAMPLES, value=len(x_train))
    logger.event(key=constants.EVAL_SAMPLES, value=len(x_val))
    model = DigitsCNN(rng)
    logger.end(key=constants.INIT_STOP)

    logger.start(key=constants.RUN_START)
    accuracy, epoch = 0.0, 0
    for epoch in range(1, args.max_epochs + 1):
        logger.start(key=constants.EPOCH_START, metadata={"epoch_num": epoch})
        order = rng.permutation(len(x_train))
        for first in range(0, len(order), args.batch_size):
            batch = order[first:first + args.batch_size]
            model.step(x_train[batch], y_train[batch], args.lr)
        logger.end(key=constants.EPOCH_STOP, metadata={"epoch_num": epoch})
        logger.start(key=constants.EVAL_START, metadata={"epoch_num": epoch})
        accuracy = float((model.predict(x_val) == y_val).mean())
        logger.event(key=constants.EVAL_ACCURACY, value=accuracy, metadata={"epoch_num": epoch})
        logger.end(key=constants.EVAL_STOP, metadata={"epoch_num": epoch})
        if accuracy >= args.target_accuracy:
            break
    reached = accuracy >= args.target_accuracy
    logger.end(key=constants.RUN_STOP, metadata={"status": constants.SUCCESS if reached else constants.ABORTED})
    save_weights(args.out, conv=model.conv, conv_b=model.conv_b, fc=model.fc, fc_b=model.fc_b)
    print(f"train_digits: accuracy {accuracy:.4f} after {epoch} epochs (target {args.target_accuracy})")
    return 0 if reached else 1


if __name__ == "__main__":
    sys.exit(main())

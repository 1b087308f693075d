"""Train a small PyTorch CNN on the digits train split and export it to ONNX ([N,1,8,8] -> probabilities)."""

import os
import sys
import argparse
import io
import warnings

import numpy as np

OPSET = 17


def build_model():
    import torch.nn as nn

    return nn.Sequential(
        nn.Conv2d(1, 16, kernel_size=3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, kernel_size=3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 10),
    )


def export_onnx(model, path: str) -> str:
    """Export model+softmax with a dynamic batch; returns which exporter wrote it.

    The TorchScript exporter (dynamo=False) needs nothing beyond torch and onnx; the dynamo exporter
    (torch's default since 2.9) also needs onnxscript, so it is only the fallback.
    """
    import onnx
    import torch

    class WithSoftmax(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return torch.softmax(self.net(x), dim=1)

    wrapped = WithSoftmax(model).eval()
    example = torch.zeros(1, 1, 8, 8, dtype=torch.float32)
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter announces its own deprecation
            torch.onnx.export(wrapped, (example,), buf, dynamo=False, input_names=["input"],
                              output_names=["probabilities"],
                              dynamic_axes={"input": {0: "N"}, "probabilities": {0: "N"}},
                              opset_version=OPSET, do_constant_folding=True)
        exporter = "torchscript"
        proto = onnx.load_from_string(buf.getvalue())
    except Exception as legacy_error:  # noqa: BLE001 - try the other exporter, report both on failure
        try:
            batch = torch.export.Dim("N", min=1)
            program = torch.onnx.export(wrapped, (example,), dynamo=True, input_names=["input"],
                                        output_names=["probabilities"], dynamic_shapes=({0: batch},),
                                        opset_version=OPSET)
            proto = program.model_proto
            exporter = "dynamo"
        except Exception as dynamo_error:  # noqa: BLE001
            raise RuntimeError(f"ONNX export failed: TorchScript exporter: {legacy_error!r}; "
                               f"dynamo exporter: {dynamo_error!r}") from dynamo_error
    proto.producer_name = "mlbuild-digits-train_torch"
    proto.graph.name = "digits_cnn"
    onnx.checker.check_model(proto)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    onnx.save(proto, path)
    return exporter


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train", required=True, help="train npz from preprocess.py (x NCHW float32, y int64)")
    parser.add_argument("--out", required=True, help="output ONNX model: input [N,1,8,8] -> probabilities [N,10]")
    parser.add_argument("--epochs", type=int, default=8, help="training epochs (default 8)")
    parser.add_argument("--batch-size", type=int, default=32, help="minibatch size (default 32)")
    parser.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate (default 1e-2)")
    parser.add_argument("--seed", type=int, default=0, help="torch/numpy seed (default 0)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra/inter-op and BLAS threads (default 1)")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(args.threads)
    except RuntimeError:
        pass  # only settable before the first parallel work; harmless if already fixed
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)

    with np.load(args.train) as data:
        x = torch.from_numpy(np.ascontiguousarray(data["x"], dtype=np.float32))
        y = torch.from_numpy(np.asarray(data["y"], dtype=np.int64))

    model = build_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(args.seed)
    model.train()
    for _ in range(args.epochs):
        order = torch.randperm(len(x), generator=generator)
        for i in range(0, len(x), args.batch_size):
            idx = order[i:i + args.batch_size]
            optimizer.zero_grad()
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        train_acc = float((model(x).argmax(dim=1) == y).float().mean())

    exporter = export_onnx(model, args.out)
    print(f"train_torch: CNN {args.epochs} epochs, final loss {loss.item():.4f}, train accuracy {train_acc:.4f}, "
          f"torch {torch.__version__}, {exporter} exporter -> {args.out} (opset {OPSET})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

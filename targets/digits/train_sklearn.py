"""Train a scikit-learn MLP on the digits train split and export it as an ONNX model with an NCHW `input`."""

import os
import sys
import argparse
import warnings

import numpy as np

TARGET_OPSET = 17  # an upper bound: skl2onnx picks the lowest opset that expresses the model


def _to_nchw_probabilities(model):
    """Give a [N,64] skl2onnx graph the public interface input [N,1,8,8] -> probabilities [N,10] only.

    A Reshape is prepended (skl2onnx cannot take 4-D input for an MLP), and the `label` output is
    dropped together with the nodes that only fed it.
    """
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    (old_input,) = graph.input
    flat_name = "input_flat"
    for node in graph.node:
        node.input[:] = [flat_name if name == old_input.name else name for name in node.input]
    graph.initializer.append(numpy_helper.from_array(np.array([-1, 64], dtype=np.int64), name="input_flat_shape"))
    graph.node.insert(0, helper.make_node("Reshape", ["input", "input_flat_shape"], [flat_name], name="FlattenNCHW"))
    del graph.input[:]
    graph.input.append(helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 8, 8]))

    keep = [o for o in graph.output if o.name == "probabilities"]
    if not keep:
        raise RuntimeError(f"skl2onnx produced no 'probabilities' output: {[o.name for o in graph.output]}")
    del graph.output[:]
    graph.output.extend(keep)
    graph.output[0].type.tensor_type.shape.dim[0].dim_param = "N"

    # Prune nodes that no longer reach an output (the ArgMax/label branch).
    needed = {"probabilities"}
    kept = []
    for node in reversed(list(graph.node)):
        if any(out in needed for out in node.output):
            kept.append(node)
            needed.update(node.input)
    kept.reverse()
    del graph.node[:]
    graph.node.extend(kept)
    used = {name for node in graph.node for name in node.input}
    inits = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    domains = {node.domain for node in graph.node}
    opsets = [op for op in model.opset_import if op.domain in ("", "ai.onnx") or op.domain in domains]
    del model.opset_import[:]
    model.opset_import.extend(opsets)
    return model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train", required=True, help="train npz from preprocess.py (x NCHW float32, y int64)")
    parser.add_argument("--out", required=True, help="output ONNX model: input [N,1,8,8] -> probabilities [N,10]")
    parser.add_argument("--hidden", type=int, default=64, help="hidden units (default 64)")
    parser.add_argument("--max-iter", type=int, default=300, help="training epochs (default 300)")
    parser.add_argument("--seed", type=int, default=0, help="random_state (default 0)")
    args = parser.parse_args(argv)

    import onnx
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    with np.load(args.train) as data:
        x = np.asarray(data["x"], dtype=np.float32).reshape(len(data["x"]), -1)
        y = np.asarray(data["y"], dtype=np.int64)

    clf = MLPClassifier(hidden_layer_sizes=(args.hidden,), random_state=args.seed, max_iter=args.max_iter,
                        alpha=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x, y)
    train_acc = float((clf.predict(x) == y).mean())

    model = convert_sklearn(clf, initial_types=[("input_flat_sk", FloatTensorType([None, 64]))],
                            options={id(clf): {"zipmap": False}}, target_opset=TARGET_OPSET)
    model = _to_nchw_probabilities(model)
    model.graph.name = "digits_mlp"  # skl2onnx names the graph with a random uuid: keep the bytes reproducible
    model.producer_name = "mlbuild-digits-train_sklearn"
    onnx.checker.check_model(model)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    onnx.save(model, args.out)
    opset = next(op.version for op in model.opset_import if op.domain in ("", "ai.onnx"))
    print(f"train_sklearn: MLP({args.hidden},) {clf.n_iter_} iterations, train accuracy {train_acc:.4f}, "
          f"wrote {args.out} (opset {opset}, input [N,1,8,8] -> probabilities [N,10])")
    return 0


if __name__ == "__main__":
    sys.exit(main())

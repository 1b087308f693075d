"""//mlperf:app, the variation matrix of CM's app-mlperf-inference-mlcommons-python, as a user
queries it (nothing here needs the internet or a GPU: query builds nothing)."""

import json

import pytest


@pytest.fixture(scope="module")
def query(copy_example, mlbuild, tmp_path_factory):
    root, cache = copy_example("mlperf"), tmp_path_factory.mktemp("cache")

    def run(expression: str, config: str) -> dict:
        done = mlbuild(root, cache, "query", expression, f"--config={config}", "--output", "json")
        assert done.returncode == 0, done.stderr
        return {row["label"]: row["configuration"] for row in json.loads(done.stdout)}

    return run


def test_cuda_int8_batch_8_needs_ort_gpu_the_int8_model_at_batch_8_and_imagenet(query):
    nodes = query("deps(//mlperf:app)", "cuda,int8,batch_size=8")
    assert "//mlperf:lib_onnxruntime_gpu" in nodes and "//mlperf:cuda_cudnn" in nodes
    assert nodes["//mlperf:resnet50_model"]["batch_size"] == 8
    assert nodes["//mlperf:resnet50_model"]["precision"] == "int8" and "//models:resnet50_int8" in nodes
    assert "//datasets:imagenet_val" in nodes and "//mlperf:lib_torch" not in nodes


def test_retinanet_runs_at_batch_1_whatever_was_asked(query):
    nodes = query("deps(//mlperf:app)", "retinanet,batch_size=8")
    assert nodes["//mlperf:app"]["batch_size"] == 1 and "//mlperf:openimages" in nodes


def test_aliases_and_default_overrides_of_the_seed(query):
    nodes = query("deps(//mlperf:app)", "bert-99,tensorflow,quantized")
    assert nodes["//mlperf:app"]["backend"] == "tf" and nodes["//mlperf:app"]["precision"] == "int8"
    assert {"//mlperf:lib_tensorflow", "//mlperf:lib_transformers", "//mlperf:squad"} <= set(nodes)
    llama = query("deps(//mlperf:app)", "llama2-70b-99")  # its default backend is pytorch
    assert llama["//mlperf:app"]["backend"] == "pytorch" and "//mlperf:lib_torch" in llama


def test_both_modes_are_transitions_of_one_app(query):
    nodes = query("deps(//mlperf:app_runs)", "rnnt,rnnt_checksum=sha256:" + "0" * 64)
    assert nodes["//mlperf:app"]["mode"] == "accuracy"
    assert nodes["//mlperf:app@performance"]["mode"] == "performance"
    assert "mode" not in nodes["//mlperf:app_runs"]  # its transitions pin it

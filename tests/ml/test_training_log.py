"""The MLPerf training log parser and verdict, on the logs of a successful, an aborted and a
below-target run (and on logs that are not MLPerf training logs at all)."""

import json

from mlbuild.training_log import judge_training, parse_training_log


def mllog(key, time_ms, value=None, event_type="POINT_IN_TIME", **metadata) -> str:
    """One line as mlperf_logging.mllog writes it."""
    record = {"namespace": "", "time_ms": time_ms, "event_type": event_type, "key": key, "value": value,
              "metadata": {"file": "train.py", "lineno": 1, **metadata}}
    return ":::MLLOG " + json.dumps(record)


def run_log(accuracies, status="success", stop=True) -> str:
    lines = [mllog("submission_benchmark", 1000, "digits"), "training: a line the script printed",
             mllog("run_start", 2000, event_type="INTERVAL_START")]
    for epoch, accuracy in enumerate(accuracies, 1):
        lines.append(mllog("eval_accuracy", 2000 + 1500 * epoch, accuracy, epoch_num=epoch))
    if stop:
        lines.append(mllog("run_stop", 2000 + 1500 * len(accuracies) + 250, event_type="INTERVAL_END", status=status))
    return "\n".join(lines) + "\n"


def test_a_successful_run_passes_with_its_time_to_train():
    run = parse_training_log(run_log([0.91, 0.96, 0.981]))
    assert run.time_to_train_s == 4.75
    assert (run.accuracy, run.epochs, run.status, run.benchmark) == (0.981, 3, "success", "digits")
    assert judge_training(run, 0.98).passed


def test_an_aborted_run_fails_on_its_status():
    verdict = judge_training(parse_training_log(run_log([0.91, 0.97], status="aborted")), 0.98)
    assert not verdict.passed
    assert "run_stop status is 'aborted', not 'success'" in verdict.reasons
    assert "eval_accuracy 0.9700 is below the target 0.98" in verdict.reasons


def test_a_run_that_stopped_below_target_fails_even_when_it_says_success():
    verdict = judge_training(parse_training_log(run_log([0.91, 0.97], status="success")), 0.98)
    assert verdict.reasons == ["eval_accuracy 0.9700 is below the target 0.98"]


def test_the_last_evaluation_counts_not_the_best():
    run = parse_training_log(run_log([0.99, 0.97]))
    assert run.accuracy == 0.97 and not judge_training(run, 0.98).passed


def test_a_run_that_never_stopped_has_no_time_to_train():
    run = parse_training_log(run_log([0.99], stop=False))
    assert run.time_to_train_s is None
    assert judge_training(run, 0.98).reasons == ["the log has no run_stop: the run did not finish"]


def test_a_log_without_mllog_lines_and_a_malformed_line_are_reported():
    verdict = judge_training(parse_training_log("epoch 1 loss 0.3\n"), 0.5)
    assert verdict.reasons[0].startswith("the log has no run_start")
    broken = run_log([0.99]) + ":::MLLOG {not json\n"
    assert judge_training(parse_training_log(broken), 0.5).reasons == ["malformed :::MLLOG lines: 6"]

"""python -m trainables as a user runs it: JSON lines on success, one line and exit 2 on bad input."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO, call_main


def trainables_cli(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "trainables", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_one_trial_prints_one_json_line_per_epoch(tmp_path, fixture_sums):
    root = fixture_sums[0]
    result = trainables_cli("mnist1d_cnn", "--set", "epochs=2", "--set", "activation=gelu", "--set", "batchnorm=true",
                            "--data-root", str(root), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[-1]["test_acc"] > 0.2 and rows[-1]["diverged"] is False


def strict_json(line: str) -> dict:
    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")

    return json.loads(line, parse_constant=refuse)


@pytest.mark.parametrize("seeds", [1, 2])
def test_diverged_loss_prints_as_json_null(seeds, tmp_path, fixture_sums):
    result = trainables_cli("mnist1d_mlp", "--set", "lr=1e4", "--set", "optimizer=sgd", "--set", "epochs=3",
                            "--set", f"members={json.dumps([{'seed': s} for s in range(seeds)])}",
                            "--data-root", str(fixture_sums[0]), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    last = strict_json(result.stdout.splitlines()[-1])
    assert last["diverged"] is True and last["train_loss"] is None
    if seeds > 1:  # every seed's own row too
        assert [row["train_loss"] for row in last["member_metrics"]] == [None] * seeds


@pytest.mark.parametrize("args, expected", [
    (["resnet"], "invalid choice: 'resnet'"),
    (["mnist1d_cnn", "--set", "activation=relu6"], "unknown activation 'relu6'; choose one of: relu, leaky_relu"),
    (["mnist1d_cnn", "--set", "optimizer=lion"], "unknown optimizer 'lion'"),
    (["mnist1d_cnn", "--set", "init=orthogonal"], "unknown init 'orthogonal'"),
    (["mnist1d_cnn", "--set", "colour=blue"], "unknown config key(s) colour"),
    (["mnist1d_cnn", "--set", "lr=0"], "lr must be a positive number"),
    (["mnist1d_cnn", "--set", "batch_size=-4"], "batch_size must be a positive integer"),
    (["mnist1d_cnn", "--set", "dropout=1"], "dropout must lie in [0, 1)"),
    (["stl10_conv6", "--set", "dropout=[0.1, 0.2]"], "dropout lists 2 probabilities but stl10_conv6 has 1 dropout"),
    (["mnist_mlp", "--set", "dropout=[0.1, 0.2, 0.3]"], "mnist_mlp has 2 dropout layer(s); give one number or a list of 2"),
    (["mnist1d_cnn", "--set", "lr"], "--set takes key=value"),
    (["cifar10_lenet"], "no dataset found at"),
    (["stl10_conv6"], "pass --download"),
    (["twitter_pos_mlp"], "missing"),
])
def test_bad_input_is_one_line_exit_2_nothing_written(tmp_path, monkeypatch, capsys, args, expected):
    # in this process (the same main as `python -m trainables`); the next test runs one case in a shell
    from trainables.__main__ import main

    monkeypatch.chdir(tmp_path)
    root = tmp_path / "empty-root"
    code = call_main(main, [*args, "--data-root", str(root)])
    out, err = capsys.readouterr()
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert expected in lines[0]
    assert "Traceback" not in err and out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no data root, no cache, nothing


def test_bad_input_from_a_shell_is_one_line_exit_2_nothing_written(tmp_path):
    result = trainables_cli("cifar10_lenet", "--data-root", str(tmp_path / "empty-root"), cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "no dataset found at" in result.stderr, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_per_layer_dropout_list_trains_the_one_dropout_of_a_cnn(tmp_path, fixture_sums):
    result = trainables_cli("mnist1d_cnn", "--set", "epochs=1", "--set", "dropout=[0.3]",
                            "--data-root", str(fixture_sums[0]), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["epoch"] == 1

import json
import os
import subprocess
import sys

import pytest

from keras_normloss import cli, train


@pytest.mark.parametrize(
    "args, message",
    [
        (["--preset", "nope"], "invalid choice: 'nope'"),
        (["--preset", "quick", "--model", "resnet18"], "unknown model 'resnet18'"),
        (["--preset", "quick", "--dataset", "no_such"], "Received: dataset='no_such'"),
        (["--preset", "quick", "--regularizer", "l1"], "invalid choice: 'l1'"),
        (["--preset", "quick", "--factor", "-1"], "expected a non-negative finite number, got -1"),
        (
            ["--preset", "quick", "--regularizer", "wrs", "--factor", "0.1"],
            "--factor does not apply",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_status_2(args, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.main(args + ["--output", str(tmp_path / "run")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert (
        err.count("\n") == 1 and err.startswith("keras-normloss train: error:") and message in err
    )
    assert not (tmp_path / "run").exists()


def test_output_holding_another_run_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    config = train.make_config("quick", out, dataset="synthetic", factor=0.5)
    (out / "config.json").write_text(json.dumps({**config.identity(), "factor": 0.25}))
    with pytest.raises(SystemExit) as exit_info:
        train.main(
            ["--preset", "quick", "--dataset", "synthetic", "--factor", "0.5", "--output", str(out)]
        )
    assert exit_info.value.code == 2
    assert "holds a different run (differs in: factor)" in capsys.readouterr().err


def test_console_script_and_module_dispatch():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-m", "keras_normloss", "--help"], capture_output=True, text=True, env=env
    )
    assert (
        proc.returncode == 0
        and "train" in proc.stdout
        and "sweep" in proc.stdout
        and "plot" in proc.stdout
    )
    proc = subprocess.run(
        [sys.executable, "-m", "keras_normloss", "fly"], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 2 and "unknown command 'fly'" in proc.stderr


def test_offline_dataset_fails_fast_with_exit_2(tmp_path, capsys):
    """A dataset that is not prepared is bad input (which dataset, where, --download): status 2,
    one line, and nothing written."""
    (tmp_path / "tfds").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        train.main(
            [
                "--preset",
                "quick",
                "--data-dir",
                str(tmp_path / "tfds"),
                "--output",
                str(tmp_path / "run"),
            ]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("keras-normloss train: error:")
    assert "not prepared" in err and str(tmp_path / "tfds") in err and "--download" in err
    assert not (tmp_path / "run").exists()


def test_non_negative_float_rejects_nan_and_inf():
    for text in ("nan", "inf", "-0.1", "x"):
        with pytest.raises(Exception):
            cli.non_negative_float(text)

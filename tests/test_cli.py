import json
import os
import subprocess
import sys

import pytest
from small_runs import tiny_run

from keras_normloss import cli, errors, startup, train


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


@pytest.mark.subprocess
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


# --- issue 17: every probe of bad input is one line and status 2, and loses nothing ----------

TINY = tiny_run(16)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--seed", "-1"], "argument --seed: expected a seed from 0 to 4294967295"),
        (
            ["--seed", str(2**32)],
            "expected a seed from 0 to 4294967295 (2**32 - 1), got 4294967296",
        ),
        (["--factor", "-1e-3"], "argument --factor: expected a non-negative finite number"),
        (["--batch-size", "x"], "argument --batch-size: expected a positive integer, got 'x'"),
        (["--epochs", "1.5"], "expected a positive integer, got '1.5'"),
        (["--strategy", "tpu"], "--strategy tpu cannot run here"),
        (["--data-dir", "FILE"], "is a file; give the directory"),
        # This process imported Keras on TensorFlow (conftest.py): its backend cannot change.
        (["--backend", "jax"], "Keras was already imported in this process with the tensorflow"),
    ],
)
def test_train_probes_are_one_line_status_2(tmp_path, capsys, args, message):
    (tmp_path / "FILE").write_text("x")
    args = [str(tmp_path / "FILE") if a == "FILE" else a for a in args]
    with pytest.raises(SystemExit) as exit_info:
        train.main(TINY + args + ["--output", str(tmp_path / "run")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("keras-normloss train: error:"), err
    assert message in err and "invalid" not in err
    assert not (tmp_path / "run").exists()


def test_an_empty_output_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.main(TINY + ["--output", ""])
    assert exit_info.value.code == 2
    assert "--output is empty" in capsys.readouterr().err


def _sweep_error(capsys, args):
    from keras_normloss.training import sweep

    with pytest.raises(SystemExit) as exit_info:
        sweep.main(TINY + args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("keras-normloss sweep: error:"), err
    return err


@pytest.mark.subprocess
def test_sweep_and_train_refuse_each_others_directories(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    config = train.make_config("quick", run, dataset="synthetic")
    (run / "config.json").write_text(json.dumps(config.identity()))
    before = sorted(os.listdir(run))
    err = _sweep_error(capsys, ["--method", "normloss", "--output", str(run)])
    assert "is a run directory of `keras-normloss train`, not a sweep" in err
    assert sorted(os.listdir(run)) == before
    swept = tmp_path / "sweep"
    swept.mkdir()
    (swept / "summary.csv").write_text("method,factor\n")
    with pytest.raises(SystemExit) as exit_info:
        train.main(TINY + ["--output", str(swept)])
    assert exit_info.value.code == 2
    assert "is a sweep directory (it holds summary.csv), not a run" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--method", "wrs", "--factor", "1e-3"], "--factor does not apply to --method wrs"),
        (["--method", "none", "--seed", "0", "-1"], "argument --seed: expected a seed from 0"),
        (["--method", "normloss", "--factor", "-1e-3"], "expected a non-negative finite number"),
    ],
)
@pytest.mark.subprocess
def test_sweep_probes_are_one_line_status_2(tmp_path, capsys, args, message):
    assert message in _sweep_error(capsys, args + ["--output", str(tmp_path / "sweep")])
    assert not (tmp_path / "sweep").exists()


def _a_run_to_plot(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.csv").write_text(
        "epoch,test_error,cross_entropy,norm_mean,dataset\n1,0.5,2.0,1.1,synthetic\n"
    )
    config = {"method": "normloss", "factor": 0.01, "model": "resnet8", "seed": 0}
    (run / "config.json").write_text(json.dumps({**config, "dataset": "synthetic"}))
    return run


def test_plot_output_is_checked_before_drawing_and_named_as_written(tmp_path, capsys):
    from keras_normloss.plotting import plots

    run = _a_run_to_plot(tmp_path)
    (tmp_path / "emptydir").mkdir()
    for output, message in [
        (tmp_path / "emptydir", "is a directory; name the figure file"),
        (tmp_path / "missing" / "fig.png", "does not exist"),
        (tmp_path / "fig.xyz", "matplotlib cannot write .xyz files"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            plots.main([str(run), "-o", str(output)])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
    assert os.listdir(tmp_path / "emptydir") == []
    assert plots.main([str(run), "-o", str(tmp_path / "fig")]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {tmp_path / 'fig'}.png"
    assert (tmp_path / "fig.png").exists()


DEFAULT = startup.KERAS_DEFAULT


@pytest.mark.parametrize(
    "variable, keras_json, installed, expected",
    [
        ("jax", "tensorflow", {"tensorflow", "jax"}, ("jax", "KERAS_BACKEND")),
        (None, "jax", {"tensorflow", "jax"}, ("jax", "~/.keras/keras.json's backend")),
        (None, "torch", {"tensorflow", "torch"}, ("torch", "~/.keras/keras.json's backend")),
        # what Keras writes on its first import, also where TensorFlow is missing
        (None, "tensorflow", {"jax"}, ("jax", DEFAULT)),
        (None, "torch", {"tensorflow", "jax"}, ("tensorflow", DEFAULT)),
        (None, None, {"jax"}, ("jax", DEFAULT)),
        (None, None, set(), ("tensorflow", DEFAULT)),  # Keras's own, which then fails to import
    ],
)
def test_one_backend_rule_for_the_command_line_and_the_library(
    monkeypatch, variable, keras_json, installed, expected
):
    """`startup.default_backend`, which `cli.start_backend` uses, and `import keras_normloss`
    sets KERAS_BACKEND=jax exactly where the rule falls back to JAX."""
    if variable:
        monkeypatch.setenv("KERAS_BACKEND", variable)
    else:
        monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setattr(startup, "keras_json_backend", lambda: keras_json)
    monkeypatch.setattr(startup, "installed", lambda module: module in installed)
    assert startup.default_backend() == expected
    monkeypatch.delitem(sys.modules, "keras")  # as before Keras is imported; put back after
    startup.default_to_jax_without_tensorflow()
    set_to_jax = expected == ("jax", DEFAULT)
    assert os.environ.get("KERAS_BACKEND") == ("jax" if set_to_jax else variable)
    if variable:  # the command line, from the same start
        monkeypatch.setenv("KERAS_BACKEND", variable)
    else:
        monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setattr(cli, "start_tensorflow", lambda verbose: None)
    name = expected[0]
    if name in cli.BACKENDS and name in installed:
        assert cli.start_backend() == name and os.environ["KERAS_BACKEND"] == name
    else:  # torch, or a backend whose library is missing
        with pytest.raises(errors.UsageError, match=f"{name}"):
            cli.start_backend()


@pytest.mark.subprocess
def test_help_and_argument_errors_do_not_start_tensorflow():
    """TensorFlow takes 5-8 s to import: `--help` and mistyped options answer without it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "KERAS_NORMLOSS"))}
    for argv, status in [
        (["--help"], 0),
        (["train", "--help"], 0),
        (["sweep", "--help"], 0),
        (["plot", "--help"], 0),
        (["train", "--preset", "nope", "--output", "x"], 2),
        (["train", "--preset", "quick", "--seed", "-1", "--output", "x"], 2),
        (["sweep", "--preset", "quick", "--method", "wrs", "--factor", "1", "--output", "x"], 2),
    ]:
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "keras_normloss", *argv],
            capture_output=True,
            text=True,
            env=env,
        )
        assert proc.returncode == status, (argv, proc.stderr[-2000:])
        imported = [l.rsplit("|", 1)[-1].strip() for l in proc.stderr.splitlines() if "|" in l]
        assert "tensorflow" not in imported and "keras" not in imported, argv
        errors = [l for l in proc.stderr.splitlines() if not l.startswith("import time:")]
        assert len(errors) == (status == 2), (argv, errors)


@pytest.mark.subprocess
def test_tensorflow_start_up_lines_are_silenced():
    """TF_CPP_MIN_LOG_LEVEL=3 does not hide the lines TensorFlow prints before its logging
    starts ("oneDNN custom operations are on", ...): the command does."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "KERAS_NORMLOSS"))}
    argv = ["train", "--preset", "quick", "--model", "nope", "--output", "x"]  # after TF starts
    proc = subprocess.run(
        [sys.executable, "-m", "keras_normloss", *argv], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "unknown model 'nope'" in proc.stderr, proc.stderr


@pytest.mark.subprocess
def test_a_sweeps_runs_start_tensorflow_quietly_too(tmp_path):
    """Each run of a sweep is a spawned process that imports TensorFlow anew: it printed
    TensorFlow's start-up lines twice per run, which the sweep itself hid."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "KERAS_NORMLOSS"))}
    argv = ["sweep", "--preset", "quick", "--dataset", "synthetic", "--model", "resnet8"]
    argv += ["--batch-size", "8", "--epochs", "1", "--steps-per-epoch", "1", "--precise-bn", "0"]
    argv += ["--method", "none", "--output", str(tmp_path / "s")]
    proc = subprocess.run(
        [sys.executable, "-m", "keras_normloss", *argv], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr == "", proc.stderr
    assert "1 run finished" in proc.stdout, proc.stdout


@pytest.mark.parametrize("command", [["--help"], ["train", "--help"], ["plot", "--help"]])
@pytest.mark.subprocess
def test_a_reader_that_goes_away_gets_no_traceback(command):
    """`keras-normloss --help | head -1` once ended in a BrokenPipeError traceback."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "keras_normloss", *command],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    proc.stdout.close()  # the reader is gone before anything is written
    stderr = proc.stderr.read()
    proc.wait(timeout=60)
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
    assert proc.returncode in (0, 141)


@pytest.mark.parametrize("method", ["normloss", "normloss-decoupled", "wrs"])
def test_a_learning_rate_of_zero_is_one_line_and_status_2(method, tmp_path, capsys):
    """`--lr 0` once ended in a ZeroDivisionError traceback (the decoupled default factor)."""
    args = ["--preset", "quick", "--dataset", "synthetic", "--method", method, "--lr", "0"]
    with pytest.raises(SystemExit) as stopped:
        train.main(args + ["--output", str(tmp_path / "r")])
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--lr must be positive" in err[0]
    assert not (tmp_path / "r").exists()


def test_the_image_size_help_says_what_a_folder_trains_at(capsys):
    """It said "their own size", and a folder of uniform 28x28 images trained at 64x64x3."""
    from keras_normloss.data import registry

    with pytest.raises(SystemExit):
        train.main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"default: {registry.DEFAULT_IMAGE_SIZE} for a folder" in help_text
    assert registry.get("folder").default_image_size == registry.DEFAULT_IMAGE_SIZE


def test_the_command_lines_names_are_the_keras_side_tables_keys():
    """keras_normloss.choices holds the option names without Keras; the tables that act on
    them are keyed by the same names (drift would be a KeyError at run time)."""
    from keras_normloss import choices, schedules
    from keras_normloss.data import augmentation
    from keras_normloss.training import build, compute

    assert schedules.SCHEDULES == choices.LR_SCHEDULES
    assert augmentation.AUGMENTATIONS == choices.AUGMENTATIONS
    assert tuple(build.OPTIMIZER_CLASSES) == choices.OPTIMIZERS
    assert tuple(compute.POLICIES) == choices.MIXED_PRECISION
    assert tuple(compute.JIT_COMPILE) == choices.JIT_COMPILE
    for option, names in [("--lr-schedule", choices.LR_SCHEDULES), ("--augment",
                          choices.AUGMENTATIONS), ("--optimizer", choices.OPTIMIZERS)]:  # fmt: skip
        action = next(a for a in train.build_parser()._actions if option in a.option_strings)
        assert tuple(action.choices) == names

"""A run never lies about how it ended (issue 17): a diverged run stops and says so, damaged run
files are refused rather than silently shortened, sizes that cannot fit are refused before any
work, and signals are honoured before training as during it."""

import json
import os
import shutil
import signal

import keras
import numpy as np
import pytest
from in_process import InProcess
from small_runs import tiny_run

from keras_normloss import data, errors, train
from keras_normloss.training import checkpoints, faults, sizes
from keras_normloss.training.checkpoints import Checkpointer, CheckpointStore

TINY = tiny_run(16)


def _one_line(capsys, start):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"keras-normloss train: {start}"), err
    return err


def _files(directory):
    out = {}
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            out[os.path.relpath(path, directory)] = open(path, "rb").read()
    return out


# --- divergence -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def diverged(tmp_path_factory):
    """--lr 1e30, one step per epoch: the weights leap to ~1e29 at the first (and last) step,
    whose channel norms overflow float32; no loss of a later step shows it."""
    out = tmp_path_factory.mktemp("diverged") / "run"
    args = TINY + ["--epochs", "2", "--steps-per-epoch", "1", "--lr", "1e30", "--output", str(out)]
    return out, args, train.main(args)


@pytest.mark.end_to_end
def test_a_run_diverging_at_its_last_step_fails_and_writes_no_success(diverged, capsys):
    out, _, status = diverged
    assert status == 1
    assert not (out / "model.keras").exists() and not (out / "results.json").exists()
    assert not (out / "checkpoint").exists() or not os.listdir(out / "checkpoint")
    record = json.loads((out / "diverged.json").read_text())
    assert (record["what"], record["epoch"], record["step"]) == ("penalty", 1, 1)


@pytest.mark.end_to_end
def test_the_same_command_says_it_diverged_instead_of_diverging_again(diverged, capsys):
    out, args, _ = diverged
    capsys.readouterr()
    before = _files(out)
    assert train.main(args) == 1
    err = _one_line(capsys, "error: ")
    assert (
        "diverged in an earlier attempt (the penalty became non-finite at epoch 1, step 1)" in err
    )
    assert "smaller --lr" in err and "diverged.json" in err
    assert _files(out) == before


def test_the_guard_checks_weights_penalty_and_test_loss_at_the_epochs_end():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    guard = faults.StopOnNonFiniteLoss(steps_per_epoch=4)
    guard.set_model(model)
    guard.on_epoch_end(0, {"test_loss": 1.0})  # finite: nothing
    with pytest.raises(
        faults.NonFiniteLoss, match="test loss became non-finite .* epoch 1, step 4"
    ):
        guard.on_epoch_end(0, {"test_loss": float("nan")})
    model.layers[0].kernel.assign(np.full((3, 2), np.inf, "float32"))
    with pytest.raises(faults.NonFiniteLoss, match="weights became non-finite .* epoch 2, step 4"):
        guard.on_epoch_end(1, {"test_loss": 1.0})


def _small_model():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(keras.optimizers.SGD(0.1), "mse")
    model.optimizer.build(model.trainable_variables)
    return model


def test_a_checkpoint_of_diverged_weights_is_never_resumed(tmp_path, monkeypatch):
    """As an older version could leave it: the newest checkpoint holds NaN weights. It is
    skipped with one line and set aside, and the one before is resumed."""
    store = CheckpointStore(str(tmp_path / "checkpoint"))
    model = _small_model()
    store.save(model, 1, 0)
    good = [w.copy() for w in model.get_weights()]
    model.set_weights([np.full_like(w, np.nan) for w in good])
    with pytest.raises(faults.NonFiniteLoss, match="weights became non-finite"):
        store.save(model, 2, 1)
    monkeypatch.setattr(checkpoints, "non_finite_part", lambda model: None)  # an old version
    store.save(model, 2, 0)
    monkeypatch.undo()
    lines, fresh = [], _small_model()
    assert CheckpointStore(str(tmp_path / "checkpoint")).restore(fresh, lines.append) == (1, 0)
    assert lines[0].startswith("skipped checkpoint ckpt-e00002-s0000000: its weights are not")
    for a, b in zip(fresh.get_weights(), good):
        np.testing.assert_array_equal(a, b)


def test_a_checkpoint_whose_penalty_overflows_is_not_written(tmp_path):
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3, kernel_regularizer=keras.regularizers.L2(1.0))]
    )
    model.layers[0].kernel.assign(np.full((4, 3), 1e30, "float32"))  # finite, its square is not
    with pytest.raises(faults.NonFiniteLoss, match="penalty became non-finite .* epoch 1, step 2"):
        CheckpointStore(str(tmp_path / "checkpoint")).save(model, 0, 2)
    assert not (tmp_path / "checkpoint").exists() or not os.listdir(tmp_path / "checkpoint")


# --- damaged run files ----------------------------------------------------------------------


@pytest.mark.end_to_end
@pytest.mark.parametrize("damage", ["header-only", "empty", "deleted", "row-cut-short"])
def test_metrics_missing_a_resumed_epoch_is_refused_and_nothing_changes(
    stopped_tiny_run, tmp_path, capsys, damage
):
    source, args = stopped_tiny_run
    out = tmp_path / "run"
    shutil.copytree(source, out)
    metrics = out / "metrics.csv"
    lines = metrics.read_text().splitlines(keepends=True)
    if damage == "header-only":
        metrics.write_text(lines[0])
    elif damage == "empty":
        metrics.write_text("")
    elif damage == "deleted":
        metrics.unlink()
    else:
        metrics.write_text(lines[0] + lines[1][: len(lines[1]) // 2])
    before = _files(out)
    capsys.readouterr()
    assert train.main(args[:-1] + [str(out)]) == 1
    err = _one_line(capsys, "error: ")
    assert "metrics.csv" in err and "the checkpoint being resumed has done (1 epoch)" in err
    assert ("is missing" if damage == "deleted" else "lacks the rows of epoch 1") in err
    assert _files(out) == before


@pytest.mark.parametrize(
    "damage, message",
    [
        ("model-deleted", "model.keras of this finished run is missing"),
        ("model-empty", "model.keras of this finished run is empty"),
        ("model-flipped", "model.keras of this finished run is damaged (SHA-256 differs)"),
        ("results-corrupt", "results.json of this finished run cannot be read"),
    ],
)
@pytest.mark.end_to_end
def test_a_finished_run_is_done_only_if_its_outputs_are_whole(
    finished_tiny_run, tmp_path, capsys, damage, message
):
    source, args = finished_tiny_run
    out = tmp_path / "run"
    shutil.copytree(source, out)
    model = out / "model.keras"
    if damage == "model-deleted":
        model.unlink()
    elif damage == "model-empty":
        model.write_bytes(b"")
    elif damage == "model-flipped":
        content = bytearray(model.read_bytes())
        content[len(content) // 2] ^= 0xFF
        model.write_bytes(bytes(content))
    else:
        (out / "results.json").write_text('{"final_test_error": 0.5, "best_')
    before = _files(out)
    capsys.readouterr()
    assert train.main(args[:-1] + [str(out)]) == 1
    assert message in _one_line(capsys, "error: ")
    assert _files(out) == before


def test_a_whole_finished_run_says_done_with_singular_epoch(finished_tiny_run, capsys):
    _, args = finished_tiny_run
    capsys.readouterr()
    assert train.main(args) == 0
    assert ", 1 epoch in " in capsys.readouterr().out.strip().splitlines()[-1]


# --- sizes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra, message",
    [
        # synthetic data: 512 training images, 32 steps of 16
        (["--steps-per-epoch", "33"], "--steps-per-epoch 33 is more than one pass"),
        (["--batch-size", "513"], "--batch-size 513 is larger than the training split"),
    ],
)
def test_sizes_beyond_the_data_are_refused_before_any_work(tmp_path, capsys, extra, message):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        train.main(TINY + ["--epochs", "1"] + extra + ["--output", str(out)])
    assert exit_info.value.code == 2
    assert message in _one_line(capsys, "error: ")
    assert not out.exists()


def test_a_batch_beyond_the_memory_is_refused():
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(16, 3, padding="same")])
    per_example = sizes.activation_bytes_per_example(model)
    assert per_example == 32 * 32 * 16 * 4
    config = train.make_config("quick", "unused", dataset="synthetic", batch_size=128)
    info = data.DataInfo("synthetic", 10, (32, 32, 3), 512, 256)
    sizes.check_sizes(config, info, model, memory=2 * 128 * per_example)  # just fits
    with pytest.raises(errors.UsageError) as info_:
        sizes.check_sizes(config, info, model, memory=2 * 64 * per_example)
    assert "--batch-size 128 needs about" in str(info_.value) and "at most about 64" in str(
        info_.value
    )


# --- signals --------------------------------------------------------------------------------


def test_a_signal_before_training_stops_at_once(tmp_path, capsys, monkeypatch):
    """Data preparation can take minutes: Ctrl-C there ends the run at once (status 130), and
    nothing is written."""
    load = data.load

    def load_then_ctrl_c(*args, **kwargs):
        pipelines = load(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)
        return pipelines

    monkeypatch.setattr(data, "load", load_then_ctrl_c)
    out = tmp_path / "run"
    assert train.main(TINY + ["--epochs", "1", "--output", str(out)]) == 130
    err = _one_line(capsys, "stopped by SIGINT (Ctrl-C) before training began")
    assert "no checkpoint of this attempt was written" in err
    assert not out.exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back


def test_sigterm_before_training_is_status_143():
    stop = faults.StopRequest()
    with pytest.raises(faults.Interrupted) as info, stop.on_signals():
        os.kill(os.getpid(), signal.SIGTERM)
    assert info.value.exit_status == 143


def test_ctrl_c_during_training_writes_a_checkpoint_and_exits_130(tmp_path, capsys, monkeypatch):
    original = faults.StopOnNonFiniteLoss.on_train_batch_end

    def ctrl_c_at_step_2(self, batch, logs=None):
        original(self, batch, logs)
        if batch == 1:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(faults.StopOnNonFiniteLoss, "on_train_batch_end", ctrl_c_at_step_2)
    out = tmp_path / "run"
    args = TINY + ["--epochs", "1", "--steps-per-epoch", "5", "--output", str(out)]
    assert train.main(args) == 130
    err = _one_line(capsys, "stopped by SIGINT (Ctrl-C); a checkpoint was written at epoch 1, ")
    step = int(err.split("step ")[1].split(":")[0])
    assert os.path.exists(out / "checkpoint" / f"ckpt-e00000-s{step:07d}.json")
    assert not (out / "results.json").exists()


# --- a sweep with a diverged run --------------------------------------------------------------


@pytest.mark.slow  # two runs in this process: 25 s on the loaded 2-core machine
def test_a_sweep_records_a_diverged_run_goes_on_and_skips_it_when_started_again(
    tmp_path, capsys, monkeypatch
):
    from keras_normloss.training import sweep

    monkeypatch.setattr(sweep.multiprocessing, "get_context", lambda method: InProcess)
    out = tmp_path / "sweep"
    args = TINY + ["--batch-size", "64", "--epochs", "1", "--steps-per-epoch", "1"]
    args += ["--method", "normloss"]
    args += ["--factor", "1e30", "1e-3", "--output", str(out)]
    assert sweep.main(args) == 1
    captured = capsys.readouterr()
    assert "normloss_f1e+30_s0_b64: diverged; the sweep goes on" in captured.out
    assert "[2/2] normloss_f0.001_s0_b64" in captured.out
    last = captured.err.strip().splitlines()[-1]
    assert last.startswith("keras-normloss sweep: error: 1 run diverged (normloss_f1e+30_s0_b64")
    rows = sweep.write_summary(str(out))
    assert [r["run"] for r in rows] == ["normloss_f0.001_s0_b64"] and rows[0][
        "method"
    ] == "normloss"
    assert sweep.main(args) == 1  # at once: nothing runs again
    assert "diverged in an earlier attempt" in capsys.readouterr().out


def test_sigterm_as_a_run_ends_stops_the_sweep_before_the_next(tmp_path, capsys, monkeypatch):
    """A signal that comes after a run's training (while it saves its model) cannot stop that
    run, which exits 0; the sweep must still stop, not start the next run (it used to go on,
    seen in the Fashion-MNIST study)."""
    from keras_normloss.training import sweep

    ran = []

    def run_then_sigterm(config, parent=None):
        ran.append(os.path.basename(config.output))
        os.kill(os.getpid(), signal.SIGTERM)  # the sweep's handler records it

    monkeypatch.setattr(sweep.multiprocessing, "get_context", lambda method: InProcess)
    monkeypatch.setattr(sweep, "_run_one", run_then_sigterm)
    out = tmp_path / "sweep"
    args = TINY + ["--epochs", "1", "--method", "normloss", "--factor", "1e-3", "1e-2"]
    assert sweep.main(args + ["--output", str(out)]) == 143
    assert ran == ["normloss_f0.001_s0_b16"]
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "stopped by SIGTERM as run " in last and "goes on with the next run" in last
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # put back


@pytest.mark.slow
@pytest.mark.subprocess
def test_one_process_per_run_directory_and_a_killed_sweeps_run_stops_with_it(tmp_path):
    """A sweep killed with -9 once left its run training as an orphan, and the sweep started
    again trained the same run beside it (epoch 1 twice in metrics.csv). Now a second process
    is refused on a run directory that one is training, and a sweep's run gets SIGTERM when
    the sweep dies: it saves a checkpoint and stops, which frees the directory."""
    import subprocess
    import sys
    import time

    from keras_normloss.training.run_directory import RunDirectoryBusy, exclusive

    out = tmp_path / "sweep"
    grid = TINY + ["--epochs", "60"]  # 32 steps an epoch: a minute or more
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    sweeping = subprocess.Popen(
        [sys.executable, "-m", "keras_normloss", "sweep", *grid, "--method", "normloss"]
        + ["--factor", "1e-3", "--output", str(out)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,  # a full pipe would block
    )  # fmt: skip
    run_dir = out / "normloss_f0.001_s0_b16"
    deadline = time.monotonic() + 180
    while not (run_dir / "config.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # the run is about to train
    assert (run_dir / "config.json").exists(), "the sweep's run did not start"
    with pytest.raises(SystemExit) as refused:
        train.main(grid + ["--method", "normloss", "--factor", "1e-3", "--output", str(run_dir)])
    assert refused.value.code == 2
    sweeping.kill()  # -9: no handler of the sweep runs
    sweeping.wait()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with exclusive(run_dir):
                break  # the run has ended: its lock is free
        except RunDirectoryBusy:
            time.sleep(0.1)
    else:
        pytest.fail("the sweep's run went on training after the sweep was killed")
    assert not (run_dir / "results.json").exists()  # it stopped, it did not finish


def test_a_signal_whose_exception_was_swallowed_still_stops_the_run():
    """SIGTERM while the run starts raises `Interrupted` from the handler, wherever Python is;
    TensorFlow's autograph, converting a function then, caught it and went on (seen: a sweep's
    orphaned run trained on). The signal is recorded too, and training does not begin."""
    stop = faults.StopRequest()
    with pytest.raises(faults.Interrupted):
        stop._handler(signal.SIGTERM, None)
    # As if swallowed: the checkpointer's on_train_begin stops the run before any step.
    checkpointer = Checkpointer(None, steps_per_epoch=10, stop=stop)
    with pytest.raises(faults.Interrupted) as stopped:
        checkpointer.on_train_begin()
    assert stopped.value.exit_status == 143
    quiet = faults.StopRequest()
    Checkpointer(None, steps_per_epoch=10, stop=quiet).on_train_begin()
    quiet._handler(signal.SIGTERM, None)  # during training: recorded, nothing raised
    assert quiet.signum == signal.SIGTERM


@pytest.mark.slow
@pytest.mark.subprocess
def test_ctrl_c_while_a_sweeps_run_starts_stops_the_sweep_with_130_and_no_traceback(tmp_path):
    """The signal once reached the starting run as SIGINT: a KeyboardInterrupt traceback of 30
    frames and exit status 1 (SIGTERM: "run failed (exit status -15)"). Now the sweep stops
    with the status its signal promises, and says so in one line."""
    import subprocess
    import sys

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    sweeping = subprocess.Popen(
        [sys.executable, "-m", "keras_normloss", "sweep", *TINY, "--epochs", "1"]
        + ["--method", "normloss", "--factor", "1e-3", "--output", str(tmp_path / "s")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    for line in sweeping.stdout:
        if line.startswith("[1/1]"):
            break  # the run's process has just been started
    sweeping.send_signal(signal.SIGINT)
    _, stderr = sweeping.communicate(timeout=120)
    assert sweeping.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr
    assert "stopped by SIGINT (Ctrl-C)" in stderr.strip().splitlines()[-1]


def test_a_run_killed_after_its_last_epoch_says_it_only_writes_its_results():
    """It said "resuming at epoch 2, step 0" for a one-epoch run."""
    from keras_normloss.training.messages import resume_line

    assert resume_line(0, 7, 3) == "resuming at epoch 1, step 7."
    assert resume_line(2, 0, 3) == "resuming at epoch 3, step 0."
    assert resume_line(1, 0, 1).startswith("every epoch (1) is trained already")

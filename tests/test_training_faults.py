"""Faults a user or a cluster causes, injected as they would cause them: damaged checkpoints, a
full disk, SIGTERM, a NaN loss, bad paths, and switches this machine cannot run. Each ends in one
line and an exit status, and loses nothing that was there."""

import dataclasses
import errno
import glob
import inspect
import json
import os
import re
import shutil
import signal
import subprocess
import time
import zipfile

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf
from small_runs import tiny_run
from train_process import start_train

from keras_normloss import data, train
from keras_normloss.training import checkpoints, compute, keras_multiworker_patch, strategies
from keras_normloss.training.checkpoints import CheckpointStore

SMALL = tiny_run(8)


# --- the private Keras API that the multi-worker patch relies on -------------------------------


def test_private_keras_api_of_the_multiworker_patch_is_unchanged():
    """Fails loudly when a Keras release changes what `keras_multiworker_patch` patches."""
    from keras.src.backend.tensorflow import trainer as tf_trainer

    expected = {
        "reduce_per_replica": ["values", "strategy", "reduction"],
        "_collective_all_reduce_multi_worker": ["strategy"],
        "_is_per_replica_instance": ["obj"],
    }
    for name, parameters in expected.items():
        function = getattr(tf_trainer, name)
        function = getattr(function, "keras_normloss_original", function)
        assert list(inspect.signature(function).parameters) == parameters, name
    # Keras reads reduce_per_replica as a module global at trace time: patching the module works.
    assert "reduce_per_replica(" in inspect.getsource(tf_trainer.TensorFlowTrainer._make_function)
    # A model built in a strategy's scope remembers it in `_distribute_strategy`, which
    # `_maybe_symbolic_build` reads; forgotten, `distribute_strategy` is the current scope's.
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    with strategy.scope():
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    assert model._distribute_strategy is strategy
    model._distribute_strategy = None
    assert model.distribute_strategy is tf.distribute.get_strategy()
    with strategy.scope():
        assert model.distribute_strategy is strategy
    assert "self._distribute_strategy is None" in inspect.getsource(
        tf_trainer.TensorFlowTrainer._maybe_symbolic_build
    )
    assert keras_multiworker_patch.check_private_api() == []


def test_multiworker_patch_refuses_a_changed_keras(monkeypatch):
    from keras.src.backend.tensorflow import trainer as tf_trainer

    monkeypatch.setattr(tf_trainer, "reduce_per_replica", lambda values, strategy: values)
    problems = keras_multiworker_patch.check_private_api()
    assert len(problems) == 1 and "reduce_per_replica takes (values, strategy)" in problems[0]
    with pytest.raises(RuntimeError, match="changed it"):
        keras_multiworker_patch.apply(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))


# --- the checkpoint store, on a tiny model ------------------------------------------------------


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8), keras.layers.Dropout(0.5, seed=seed)]
        + [keras.layers.Dense(3)]
    )
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "mse")
    model.optimizer.build(model.trainable_variables)
    return model


def _stems(directory):
    return sorted(
        os.path.basename(p)[: -len(".json")] for p in glob.glob(f"{directory}/ckpt-*.json")
    )


def _snapshot(directory):
    """Every file under `directory` with its bytes."""
    out = {}
    for root, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            out[os.path.relpath(path, directory)] = open(path, "rb").read()
    return out


def _save_three(tmp_path, keep=2):
    """Checkpoints at (0, 1), (0, 2), (1, 0) with other weights each; returns the store, the
    model and the weights of each position."""
    store = CheckpointStore(str(tmp_path / "checkpoint"), keep=keep)
    model = _model()
    saved = {}
    for i, position in enumerate([(0, 1), (0, 2), (1, 0)]):
        model.set_weights([w + i + 1 for w in model.get_weights()])
        store.save(model, *position)
        saved[position] = [w.copy() for w in model.get_weights()]
    return store, model, saved


def test_keeps_the_last_n_checkpoints_each_with_a_sidecar(tmp_path):
    store, model, saved = _save_three(tmp_path, keep=2)
    directory = tmp_path / "checkpoint"
    assert sorted(os.listdir(directory)) == [
        "ckpt-e00000-s0000002.json",
        "ckpt-e00000-s0000002.weights.h5",
        "ckpt-e00001-s0000000.json",
        "ckpt-e00001-s0000000.weights.h5",
    ]
    meta = json.load(open(directory / "ckpt-e00001-s0000000.json"))
    assert (meta["epoch"], meta["step"]) == (1, 0)
    assert meta["weights_bytes"] == os.path.getsize(directory / "ckpt-e00001-s0000000.weights.h5")
    assert len(meta["random_state"]) == len(checkpoints.random_state_variables(model)) == 1

    fresh = _model(seed=1)
    assert fresh.get_weights()[0].tolist() != saved[(1, 0)][0].tolist()
    assert CheckpointStore(str(directory)).restore(fresh) == (1, 0)
    for a, b in zip(fresh.get_weights(), saved[(1, 0)]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "damage, reason",
    [
        ("truncate-weights", "bytes, not"),
        ("flip-a-byte", "SHA-256 differs"),
        ("sidecar-not-json", "not valid JSON"),
        ("weights-missing", "is missing"),
    ],
)
def test_resume_skips_a_damaged_newest_checkpoint_and_says_why(tmp_path, damage, reason):
    store, _, saved = _save_three(tmp_path, keep=2)
    directory = tmp_path / "checkpoint"
    newest = directory / "ckpt-e00001-s0000000"
    weights = f"{newest}.weights.h5"
    if damage == "truncate-weights":  # as a full disk or a dying network filesystem leaves it
        os.truncate(weights, os.path.getsize(weights) // 2)
    elif damage == "flip-a-byte":
        content = bytearray(open(weights, "rb").read())
        content[len(content) // 2] ^= 0xFF
        open(weights, "wb").write(bytes(content))
    elif damage == "sidecar-not-json":
        open(f"{newest}.json", "w").write('{"epoch": 1, "step": 0, "weig')
    else:
        os.remove(weights)
    lines = []
    model = _model(seed=1)
    assert CheckpointStore(str(directory)).restore(model, report=lines.append) == (0, 2)
    for a, b in zip(model.get_weights(), saved[(0, 2)]):
        np.testing.assert_array_equal(a, b)
    assert len(lines) == 1 and "\n" not in lines[0]
    assert lines[0].startswith("skipped checkpoint ckpt-e00001-s0000000: ") and reason in lines[0]
    # Set aside for a look, and never counted again.
    assert _stems(directory) == ["ckpt-e00000-s0000002"]
    assert os.path.exists(directory / "skipped" / "ckpt-e00001-s0000000.json")


def test_no_checkpoint_that_loads_is_a_clear_error_and_deletes_nothing(tmp_path):
    _save_three(tmp_path, keep=2)
    directory = tmp_path / "checkpoint"
    for path in glob.glob(f"{directory}/*.weights.h5"):
        os.truncate(path, 100)
    before = _snapshot(directory)
    with pytest.raises(checkpoints.CheckpointsUnreadable) as info:
        CheckpointStore(str(directory)).restore(_model(seed=1))
    message = str(info.value)
    assert "\n" not in message and info.value.exit_status == 1
    assert "ckpt-e00001-s0000000" in message and "ckpt-e00000-s0000002" in message
    assert "nothing was deleted" in message
    assert _snapshot(directory) == before


def test_an_old_single_state_json_checkpoint_is_a_clear_error(tmp_path):
    directory = tmp_path / "checkpoint"
    directory.mkdir()
    (directory / "state.json").write_text('{"epoch": 1, "step": 0, "weights": "x.weights.h5"}')
    with pytest.raises(checkpoints.CheckpointsUnreadable, match="earlier keras-normloss"):
        CheckpointStore(str(directory)).restore(_model())


def test_a_directory_of_an_earlier_version_is_recognised_not_a_traceback(tmp_path, capsys):
    """config.json without the fields added since (their defaults then) is the same run: a
    finished one is reported finished; an unfinished one, whose checkpoint is the old single
    state.json, stops with one line (status 1) and keeps its files."""
    out = tmp_path / "run"
    out.mkdir()
    config = train.make_config(
        "quick", out, dataset="synthetic", batch_size=8, epochs=1, model="resnet8",
        lr_schedule="constant", warmup_epochs=0,  # as SMALL
    )  # fmt: skip
    old = {k: v for k, v in dataclasses.asdict(config).items() if k != "mixed_precision"}
    (out / "config.json").write_text(json.dumps(old))
    (out / "checkpoint").mkdir()
    (out / "checkpoint" / "state.json").write_text('{"epoch": 0, "step": 2, "weights": "w.h5"}')
    before = _snapshot(out)
    args = SMALL + ["--epochs", "1", "--output", str(out)]
    assert train.main(args) == 1
    assert "earlier keras-normloss (state.json)" in _one_line_error(capsys, "error:")
    assert _snapshot(out) == before
    results = {"final_test_error": 0.5, "best_test_error": 0.25, "best_epoch": 1, "epochs": 1}
    (out / "results.json").write_text(json.dumps({**results, "wall_seconds": 90}))
    # An earlier version recorded no SHA-256 of model.keras: a whole zip archive is accepted.
    with zipfile.ZipFile(out / "model.keras", "w") as archive:
        archive.writestr("config.json", "{}")
    assert train.main(args) == 0
    assert "final test error 50.00 % (best 25.00 % at epoch 1" in capsys.readouterr().out


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("fails", ["weights", "sidecar"])
def test_a_full_disk_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch, fails):
    store, model, saved = _save_three(tmp_path, keep=2)
    directory = tmp_path / "checkpoint"
    before = _snapshot(directory)
    if fails == "weights":

        def save_weights_until_full(path):
            open(path, "wb").write(b"\x89HDF\r\n" + b"\0" * 1000)  # a part, then no space
            _enospc()

        monkeypatch.setattr(model, "save_weights", save_weights_until_full)
    else:
        monkeypatch.setattr(checkpoints, "write_json", _enospc)
    with pytest.raises(checkpoints.CheckpointWriteFailed) as info:
        store.save(model, 1, 3)
    message = str(info.value)
    assert "\n" not in message and info.value.exit_status == 1
    assert "ckpt-e00001-s0000003" in message and "no space left on device" in message
    assert "ckpt-e00001-s0000000.json is intact" in message
    assert _snapshot(directory) == before  # nothing of the failed checkpoint is left


@pytest.mark.subprocess
def test_a_full_filesystem_for_real(tmp_path):
    """The same on a 64 KiB tmpfs, where mounting one is allowed (root in a container)."""
    mount = tmp_path / "small"
    mount.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True
    )
    if proc.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        store = CheckpointStore(str(mount / "checkpoint"))
        small = _model()
        store.save(small, 0, 1)
        before = _snapshot(mount)
        big = keras.Sequential(
            [keras.Input((4,)), keras.layers.Dense(8)] + [keras.layers.Dense(4000)]
        )
        big.compile(keras.optimizers.SGD(0.1), "mse")
        with pytest.raises(checkpoints.CheckpointWriteFailed, match="no space left on device"):
            store.save(big, 0, 2)
        assert _snapshot(mount) == before
        # HDF5 never touched the full disk: a file or group left open by a failed HDF5 write
        # makes the process die with SIGSEGV when it exits.
        left_open = (h5py.h5f.FileID, h5py.h5g.GroupID)
        assert not [i for i in h5py.h5f.get_obj_ids() if isinstance(i, left_open)]
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_non_finite_weights_are_never_checkpointed(tmp_path):
    store, model, _ = _save_three(tmp_path, keep=2)
    before = _snapshot(tmp_path / "checkpoint")
    weights = model.get_weights()
    weights[0][0, 0] = np.nan
    model.set_weights(weights)
    with pytest.raises(train.NonFiniteLoss, match="weights became non-finite .* epoch 2, step 5"):
        store.save(model, 1, 5)
    assert _snapshot(tmp_path / "checkpoint") == before


# --- through `keras-normloss train` -------------------------------------------------------------


def _one_line_error(capsys, status_text):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"keras-normloss train: {status_text}"), err
    return err


@pytest.mark.parametrize(
    "make_bad_path, option, message",
    [
        (lambda tmp: tmp / "passwd", "--output", "is a file, not a directory"),
        (lambda tmp: tmp / "passwd" / "run", "--output", "passwd is a file"),
        (lambda tmp: "/proc/keras-normloss-run", "--output", "is not writable"),
        (lambda tmp: tmp / "nowhere", "--data-dir", "does not exist"),
    ],
    ids=["output-is-a-file", "output-under-a-file", "output-unwritable", "data-dir-missing"],
)
def test_bad_paths_are_one_line_status_2_and_touch_nothing(
    tmp_path, capsys, make_bad_path, option, message
):
    if str(make_bad_path(tmp_path)).startswith("/proc") and not os.path.isdir("/proc/self"):
        pytest.skip("no /proc")
    (tmp_path / "passwd").write_text("root:x:0:0\n")
    before = _snapshot(tmp_path)
    paths = {"--output": str(tmp_path / "run"), "--data-dir": None}
    paths[option] = str(make_bad_path(tmp_path))
    args = SMALL + ["--output", paths["--output"]]
    if paths["--data-dir"]:
        args += ["--data-dir", paths["--data-dir"]]
    with pytest.raises(SystemExit) as exit_info:
        train.main(args)
    assert exit_info.value.code == 2
    assert message in _one_line_error(capsys, "error:")
    assert _snapshot(tmp_path) == before


def test_float16_without_a_gpu_and_xla_over_cpu_replicas_are_refused(tmp_path, capsys):
    if strategies.has_gpu():
        pytest.skip("float16 is allowed with a GPU")
    # A CPU with native float16 (AVX512-FP16) runs it: the run would train for minutes.
    native_float16 = compute._cpu_flags() & {"avx512_fp16", "amx_fp16"}
    for extra, message in [
        *([] if native_float16 else [(["--mixed-precision", "float16"], "float16 needs a GPU")]),
        # conftest.py gives this process 2 logical CPUs: a 2-replica MirroredStrategy.
        (["--jit-compile", "on", "--strategy", "mirrored"], "several CPU replicas"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            train.main(SMALL + extra + ["--output", str(tmp_path / "run")])
        assert exit_info.value.code == 2
        assert message in _one_line_error(capsys, "error:")
        assert not (tmp_path / "run").exists()


@pytest.mark.end_to_end
def test_bfloat16_and_xla_train_on_one_device_and_are_recorded(tmp_path, capsys):
    out = tmp_path / "run"
    args = SMALL + ["--epochs", "1", "--steps-per-epoch", "2", "--output", str(out)]
    args += ["--mixed-precision", "bfloat16", "--jit-compile", "on", "--strategy", "one-device"]
    assert train.main(args) == 0
    assert keras.config.dtype_policy().name == "float32"  # put back for the caller
    config = json.load(open(out / "config.json"))
    results = json.load(open(out / "results.json"))
    assert (config["mixed_precision"], config["jit_compile"]) == ("bfloat16", "on")
    assert results["dtype_policy"] == "mixed_bfloat16" and results["xla_used"] is True
    assert np.isfinite(results["final_train_cross_entropy"])
    model = keras.saving.load_model(out / "model.keras")
    conv = next(l for l in model.layers if isinstance(l, keras.layers.Conv2D))
    assert conv.compute_dtype == "bfloat16" and conv.kernel.dtype == "float32"
    assert model.get_layer("classifier").compute_dtype == "float32"  # float32 logits
    # The summary line, from the files it summarises.
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("keras-normloss train: done: final test error ")
    assert f"{100 * results['final_test_error']:.2f} %" in last
    assert f"at epoch {results['best_epoch']}" in last and f"outputs in {out}" in last
    # ... printed again when the run is finished already.
    assert train.main(args) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == last


@pytest.mark.end_to_end
def test_nan_loss_stops_at_once_and_keeps_the_last_good_checkpoint(tmp_path, capsys, monkeypatch):
    """NaN images from the second epoch on (a broken file, an overflow): the first NaN step
    stops the run; the checkpoint of epoch 1 stays, and no checkpoint or metrics row of epoch 2
    is written."""
    steps = 2
    load = data.load

    def load_nan_from_epoch_2(*args, **kwargs):
        pipelines = load(*args, **kwargs)

        def train_batches(first_epoch, skip_steps=0):
            batches = pipelines.train(first_epoch, skip_steps).enumerate()
            return batches.map(
                lambda i, batch: (
                    tf.where(
                        i + first_epoch * steps + skip_steps >= steps,
                        batch[0] * float("nan"),
                        batch[0],
                    ),
                    batch[1],
                )
            )

        return dataclasses.replace(pipelines, train=train_batches)

    monkeypatch.setattr(data, "load", load_nan_from_epoch_2)
    out = tmp_path / "run"
    args = SMALL + ["--epochs", "3", "--steps-per-epoch", str(steps), "--output", str(out)]
    assert train.main(args) == 1
    err = _one_line_error(capsys, "error:")
    assert "loss became non-finite (NaN or infinity) at epoch 2, step 1" in err
    assert _stems(out / "checkpoint") == ["ckpt-e00001-s0000000"]
    with h5py.File(out / "checkpoint" / "ckpt-e00001-s0000000.weights.h5") as f:
        arrays = []
        f.visititems(lambda _, v: arrays.append(v[()]) if isinstance(v, h5py.Dataset) else None)
    assert arrays and all(np.all(np.isfinite(a)) for a in arrays)
    assert [r["epoch"] for r in train.read_metrics(out)] == [1.0]
    assert not (out / "results.json").exists()


@pytest.mark.subprocess
def test_sigterm_saves_and_exits_143_then_resume_past_a_truncated_checkpoint(tmp_path):
    """A cluster's SIGTERM mid-epoch: the run saves at the step it is on and exits 143. The
    newest checkpoint is then cut short (the disk failed); the same command skips it, says so,
    resumes from the one before, and finishes. Meanwhile checkpoint/ was moved to another
    folder holding files of its own and linked back: the run deletes only its own files there
    (pruning once deleted every *.weights.h5 without a sidecar and every *.json.tmp)."""
    out = tmp_path / "run"
    args = SMALL + ["--epochs", "1", "--steps-per-epoch", "12", "--checkpoint-every", "2"]
    args += ["--output", str(out)]
    proc = start_train(args)
    deadline = time.monotonic() + 120
    while not glob.glob(f"{out}/checkpoint/ckpt-*.json") and time.monotonic() < deadline:
        time.sleep(0.02)  # the first periodic checkpoint: it is stepping
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr[-2000:]
    # The progress bar's line is ended: on a terminal the stop line (stderr) was glued to it.
    assert "━" in stdout and stdout.endswith("\n"), stdout[-300:]
    last = stderr.strip().splitlines()[-1]
    match = re.fullmatch(
        r"keras-normloss train: stopped by SIGTERM; a checkpoint was written at epoch 1, "
        r"step (\d+): run the same command to resume",
        last,
    )
    assert match, last
    step = int(match[1])
    stems = _stems(out / "checkpoint")
    assert stems[-1] == f"ckpt-e00000-s{step:07d}" and len(stems) == 2
    assert not (out / "metrics.csv").exists()  # no epoch ended

    weights = out / "checkpoint" / f"{stems[-1]}.weights.h5"
    os.truncate(weights, os.path.getsize(weights) - 1)
    previous_step = int(stems[0][-7:])
    elsewhere = tmp_path / "elsewhere"
    shutil.move(out / "checkpoint", elsewhere)
    (out / "checkpoint").symlink_to(elsewhere, target_is_directory=True)
    foreign = {"model.weights.h5": b"weights", "notes.json.tmp": b"{", "ckpt-notes.txt": b"x"}
    for name, content in foreign.items():
        (elsewhere / name).write_bytes(content)
    resumed = start_train(args)
    stdout, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr[-2000:]
    assert f"skipped checkpoint {stems[-1]}: its weights file has" in stderr
    assert f"resuming at epoch 1, step {previous_step}." in stdout
    assert [r["epoch"] for r in train.read_metrics(out)] == [1.0]
    assert (out / "results.json").exists() and not os.path.lexists(out / "checkpoint")
    # The run's checkpoints (and the one it set aside) are gone; the folder's own files stay.
    left = {p.name: p.read_bytes() for p in elsewhere.rglob("*") if p.is_file()}
    assert left == foreign

"""results.json and model.keras: what a finished run writes, and the libraries it used."""

import os
import sys
import tempfile

import keras
import numpy as np

import keras_normloss
from keras_normloss import data
from keras_normloss.training import norm_records
from keras_normloss.training.metrics import read_metrics
from keras_normloss.training.run_directory import sha256, write_json


def write_model_and_results(config, model, distribution, info, timescale):
    """Saves model.keras and writes results.json (on the chief; elsewhere the model is saved
    to a scratch directory, as the collective save needs every process). Returns the results,
    `{}` off the chief."""
    if not distribution.chief:
        with tempfile.TemporaryDirectory() as scratch:  # see CheckpointStore.save
            model.save(os.path.join(scratch, "model.keras"))
        return {}
    # Written under another name and renamed: a run stopped while saving leaves no model.keras
    # that looks whole, and its SHA-256 in results.json lets a later start check it.
    model_path = os.path.join(config.output, "model.keras")
    model.save(os.path.join(config.output, "tmp-model.keras"))
    os.replace(os.path.join(config.output, "tmp-model.keras"), model_path)
    rows = read_metrics(config.output)
    best = min(rows, key=lambda r: r["test_error"])
    results = {
        # The number to report: the test error after the last epoch. The best
        # epoch is chosen on the test set itself, so its error is optimistic.
        "report": "final_test_error",
        "final_test_error": rows[-1]["test_error"],
        "best_test_error": best["test_error"],
        "best_epoch": int(best["epoch"]),
        "final_test_cross_entropy": rows[-1]["test_cross_entropy"],
        # Measured on images held out of the training split (None without one): what
        # factors and other settings are chosen on, never the test error.
        "final_validation_error": _or_none(rows[-1].get("validation_error")),
        "final_validation_cross_entropy": _or_none(rows[-1].get("validation_cross_entropy")),
        "validation_images": info.validation_examples,
        "validation_seed": data.validation.VALIDATION_SEED if info.validation_examples else None,
        "final_train_cross_entropy": rows[-1]["cross_entropy"],
        "final_oblique_distance": rows[-1]["oblique_distance"],
        "timescale": timescale,
        "dynamics": norm_records.last_dynamics(config),
        "epochs": len(rows),
        "wall_seconds": sum(r["epoch_seconds"] for r in rows),
        "dataset": info.name,
        "synthetic_data": info.synthetic,
        "mixed_precision": config.mixed_precision,
        "dtype_policy": keras.config.dtype_policy().name,
        "jit_compile": config.jit_compile,
        # What Keras made of it ("auto": False under any tf.distribute strategy, True on JAX).
        "xla_used": bool(model.jit_compile),
        "backend": config.backend,
        "versions": _versions(distribution),
        "device": distribution.device_report(),
        "model_sha256": sha256(model_path),
        "notes": {
            "final_test_error": "the error to report: after the last epoch, chosen by nothing",
            "best_test_error": "the lowest test error of any epoch: picked on the test set, "
            "so optimistic; do not report it as a result",
            "final_validation_error": "after the last epoch, on the images held out of the "
            "training split (the same for every seed): choose settings on this, not on test",
            "test_loss": "metrics.csv's test_loss includes the regularization penalty; "
            "compare methods on test_cross_entropy or test_error",
        },
    }
    if info.synthetic:
        results["note"] = "SYNTHETIC data: these numbers say nothing about a real dataset."
    write_json(os.path.join(config.output, "results.json"), results)
    return results


def _or_none(value):
    return None if value is None or value != value else value  # NaN: no validation split


def _versions(distribution):
    """The libraries the run used (TensorFlow's only where it trained or wrote summaries)."""
    versions = {
        "python": sys.version.split()[0],
        "keras": keras.__version__,
        **distribution.versions(),
        "numpy": np.__version__,
        "keras_normloss": keras_normloss.__version__,
    }
    if "tensorflow" not in versions and sys.modules.get("tensorflow") is not None:
        versions["tensorflow"] = sys.modules["tensorflow"].__version__  # for the summaries
    return versions

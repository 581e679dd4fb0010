"""What a run records of its weight norms beyond metrics.csv: the NormDynamics callback that
writes dynamics.csv, and results.json's `dynamics` entry (the last sample, beside the equilibrium
that `keras_normloss.methods.norm_theory` predicts)."""

import dataclasses
import math
import os

from keras_normloss import callbacks as norm_callbacks
from keras_normloss.methods import norm_theory


def dynamics_callbacks(config, chief, tensorboard):
    """The run's NormDynamics callback (on the chief; none with --dynamics-every 0)."""
    if not chief or config.dynamics_every == 0:
        return []
    return [
        norm_callbacks.NormDynamics(
            every=config.dynamics_every or norm_callbacks.DEFAULT_DYNAMICS_EVERY,
            csv_path=os.path.join(config.output, "dynamics.csv"),
            log_dir=os.path.join(config.output, "tensorboard") if tensorboard else None,
        )
    ]


def last_dynamics(config):
    """results.json's `dynamics`: dynamics.csv's last sample per group, and beside each
    group's angular update the equilibrium that `methods.norm_theory` predicts at that
    sample's learning rate and norm (valid only at equilibrium under a constant learning
    rate, for the channels followed by BatchNorm)."""
    path = os.path.join(config.output, "dynamics.csv")
    if config.dynamics_every == 0 or not os.path.exists(path):
        return None
    rows = norm_callbacks.read_dynamics(path)
    if not rows:
        return None
    last_step = rows[-1]["step"]
    settings = dataclasses.asdict(config)
    last = {}
    for row in rows:
        if row["step"] != last_step:
            continue
        # The theory is for scale-invariant channels under a constant learning rate: not the
        # classifier, nor `all`, which includes it (`norm_theory.equilibrium_groups`).
        predicted = norm_theory.predicted_angle(
            settings, row["group"], row["learning_rate"], row["norm_mean"]
        )
        stats = {
            # NaN (a group of zero channels) is not JSON: null.
            k: v if isinstance(v, int) or math.isfinite(v) else None
            for k, v in row.items()
            if k not in ("step", "epoch", "group")
        }
        last[row["group"]] = {**stats, "predicted_equilibrium_angular_update": predicted}
    return {
        "csv": "dynamics.csv",
        "every": config.dynamics_every or norm_callbacks.DEFAULT_DYNAMICS_EVERY,
        "samples": len({row["step"] for row in rows}),
        "last_step": int(last_step),
        "last": last,
    }

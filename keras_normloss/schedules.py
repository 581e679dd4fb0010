"""Learning-rate schedules as functions of the global step: the papers' steps, linear decay to zero
and cosine, each with an optional linear warmup.

A run's learning rate depends on the optimizer's step counter alone (saved in every checkpoint),
so a run resumed at step k continues with the learning rate an uninterrupted run had at step k.

| kind | after the warmup | reference |
|---|---|---|
| `step` | `lr · decay^i` after the i-th boundary epoch | the papers' schedules (He et al. 2016, Zagoruyko & Komodakis 2016) |
| `linear` | `lr · (1 − s / S)`: linear to zero at the end of the budget | Li et al., "Budgeted training", ICLR 2020 |
| `cosine` | `lr · (1 + cos(π s / S)) / 2` | Loshchilov & Hutter, SGDR, ICLR 2017 |

`s` counts the steps after the warmup and `S` is the number of steps after it. The warmup rises
linearly from 0 at step 0 to `lr` at step `warmup_steps` (Keras's `CosineDecay` convention).
"""

import keras
from keras import ops

SCHEDULES = ("step", "linear", "cosine")  # also training.config.LR_SCHEDULES, Keras-free


@keras.saving.register_keras_serializable(package="keras_normloss")
class LinearWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """A linear warmup from 0 to `peak` over `warmup_steps`, then another schedule.

    Keras's `CosineDecay` has this warmup built in; this class gives it to the others
    (`PolynomialDecay`, `PiecewiseConstantDecay`), with the same values: `peak · step /
    warmup_steps` during the warmup, then `after(step − warmup_steps)`.

    Args:
        after: the schedule that follows, counted from the end of the warmup.
        warmup_steps: the length of the warmup, a positive integer.
        peak: the learning rate the warmup reaches (`after(0)` as a rule).

    Raises:
        ValueError: if `warmup_steps` is not a positive integer.

    Example:

    ```python
    after = keras.optimizers.schedules.PolynomialDecay(0.1, 900, end_learning_rate=0.0)
    schedule = LinearWarmup(after, warmup_steps=100, peak=0.1)
    float(schedule(50))  # 0.05
    ```
    """

    def __init__(self, after, warmup_steps, peak):
        if not (isinstance(warmup_steps, int) and warmup_steps >= 1):
            raise ValueError(
                "Invalid value for argument `warmup_steps`: expected a positive integer. "
                f"Received: warmup_steps={warmup_steps!r}"
            )
        self.after = after
        self.warmup_steps = warmup_steps
        self.peak = float(peak)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warmup = self.peak * step / float(self.warmup_steps)
        later = ops.cast(self.after(ops.maximum(step - float(self.warmup_steps), 0.0)), "float32")
        return ops.where(step < float(self.warmup_steps), warmup, later)

    def get_config(self):
        return {
            "after": keras.saving.serialize_keras_object(self.after),
            "warmup_steps": self.warmup_steps,
            "peak": self.peak,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["after"] = keras.saving.deserialize_keras_object(config["after"])
        return cls(**config)


def make_schedule(kind, lr, total_steps, *, warmup_steps=0, decay_boundaries=(), decay=0.1):
    """Returns the learning-rate schedule of a run.

    Args:
        kind: one of `SCHEDULES` (see the module docstring).
        lr: the peak learning rate (the initial one without a warmup).
        total_steps: the steps of the whole run (epochs · steps per epoch); `linear` and
            `cosine` reach 0 there.
        warmup_steps: steps of linear warmup from 0 to `lr` (0: none).
        decay_boundaries: for `step`, the global steps after which the learning rate is
            multiplied by `decay` (the step whose index is the boundary is the last at the
            previous value). Ignored by the other kinds.
        decay: for `step`, the factor.

    Returns:
        A `keras.optimizers.schedules.LearningRateSchedule`.

    Raises:
        ValueError: for an unknown `kind`, a warmup as long as the run, or (for `step`) a
            warmup that reaches a decay boundary.

    Example:

    ```python
    schedule = make_schedule("linear", 0.1, total_steps=1000, warmup_steps=100)
    [round(float(schedule(s)), 4) for s in (0, 50, 100, 550)]  # [0.0, 0.05, 0.1, 0.05]
    ```
    """
    if kind not in SCHEDULES:
        raise ValueError(
            f"Invalid value for argument `kind`: expected one of {SCHEDULES}. "
            f"Received: kind={kind!r}"
        )
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(
            "Invalid value for argument `warmup_steps`: expected 0 <= warmup_steps < "
            f"total_steps={total_steps}. Received: warmup_steps={warmup_steps}"
        )
    decay_steps = total_steps - warmup_steps
    lr = float(lr)
    schedules = keras.optimizers.schedules
    if kind == "cosine":
        # Keras's own warmup: from initial_learning_rate (0) to warmup_target (lr).
        if warmup_steps:
            return schedules.CosineDecay(
                0.0, decay_steps, warmup_target=lr, warmup_steps=warmup_steps
            )
        return schedules.CosineDecay(lr, decay_steps)
    if kind == "linear":
        after = schedules.PolynomialDecay(lr, decay_steps, end_learning_rate=0.0, power=1.0)
    else:
        boundaries = [int(b) - warmup_steps for b in decay_boundaries]
        if any(b < 0 for b in boundaries):
            raise ValueError(
                f"A warmup of {warmup_steps} steps reaches the first learning-rate decay (after "
                f"step {min(decay_boundaries)}): shorten the warmup or move the decay."
            )
        values = [lr * decay**i for i in range(len(boundaries) + 1)]
        after = schedules.PiecewiseConstantDecay(boundaries, values)
    return LinearWarmup(after, warmup_steps, lr) if warmup_steps else after

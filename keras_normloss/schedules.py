"""Learning-rate schedules as functions of the global step: the papers' steps, linear decay to zero,
cosine and constant, each with an optional linear warmup; and a schedule's mean over a run.

A run's learning rate depends on the optimizer's step counter alone (saved in every checkpoint),
so a run resumed at step k continues with the learning rate an uninterrupted run had at step k.

| kind | after the warmup | reference |
|---|---|---|
| `step` | `lr · decay^i` after the i-th boundary epoch | the papers' schedules (He et al. 2016, Zagoruyko & Komodakis 2016) |
| `linear` | `lr · (1 − s / S)`: linear to zero at the end of the budget | Li et al., "Budgeted training", ICLR 2020 |
| `cosine` | `lr · (1 + cos(π s / S)) / 2` | Loshchilov & Hutter, SGDR, ICLR 2017 |
| `constant` | `lr` (also `step` with no boundary) | the equilibrium theory's setting (`methods.norm_theory`) |

`s` counts the steps after the warmup and `S` is the number of steps after it. The warmup rises
linearly from 0 at step 0 to `lr` at step `warmup_steps` (Keras's `CosineDecay` convention).
"""

import keras
from keras import ops

from keras_normloss.choices import LR_SCHEDULES

SCHEDULES = LR_SCHEDULES  # the names: keras_normloss.choices


@keras.saving.register_keras_serializable(package="keras_normloss")
class ConstantLearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """The same learning rate at every step, as a schedule (so that `LinearWarmup` can precede it).

    Keras's `PiecewiseConstantDecay` needs at least one boundary (with none it raises
    `IndexError` when called), so a step schedule without decays is this one.

    Args:
        learning_rate: the learning rate, a non-negative float.

    Example:

    ```python
    float(ConstantLearningRate(0.05)(1000))  # 0.05
    ```
    """

    def __init__(self, learning_rate):
        self.learning_rate = float(learning_rate)

    def __call__(self, step):
        return ops.full((), self.learning_rate, dtype="float32")

    def get_config(self):
        return {"learning_rate": self.learning_rate}


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
        kind: one of `SCHEDULES` (see the module docstring). `step` with no
            `decay_boundaries` is `constant`.
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
    elif kind == "constant" or not decay_boundaries:
        after = ConstantLearningRate(lr)
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


def mean_learning_rate(kind, lr, total_steps, *, warmup_steps=0, decay_boundaries=(), decay=0.1):
    """The mean of a `make_schedule` schedule over the run's steps 0 .. total_steps − 1.

    What a factor's timescale is taken at (`methods.norm_theory`): a decay applied at the
    learning rate η_t shrinks the weights by `Σ_t η_t·λ` over the run, which is
    `total_steps · mean · λ` whatever the schedule's shape. Computed in closed form (the
    tests check it against the Keras schedule evaluated at every step): the warmup averages
    `lr/2`, linear decay and cosine `lr/2` (to within a step), a step schedule the
    time-weighted mean of its levels.

    Args:
        kind: as in `make_schedule`.
        lr: as in `make_schedule`.
        total_steps: as in `make_schedule`.
        warmup_steps: as in `make_schedule`.
        decay_boundaries: as in `make_schedule`.
        decay: as in `make_schedule`.

    Returns:
        The mean learning rate, a float.

    Example:

    ```python
    mean_learning_rate("cosine", 0.1, total_steps=1000)  # 0.05
    mean_learning_rate("step", 0.1, 1000, decay_boundaries=[499])  # 0.055
    ```
    """
    if kind not in SCHEDULES:
        raise ValueError(
            f"Invalid value for argument `kind`: expected one of {SCHEDULES}. "
            f"Received: kind={kind!r}"
        )
    total_steps, warmup_steps, lr = int(total_steps), int(warmup_steps), float(lr)
    after = total_steps - warmup_steps
    # The warmup's steps 0 .. W−1 take lr·s/W: their sum is lr·(W − 1)/2.
    area = lr * (warmup_steps - 1) / 2.0 if warmup_steps else 0.0
    if kind in ("linear", "cosine"):
        # Steps s = 0 .. S−1 of lr·(1 − s/S) or lr·(1 + cos(πs/S))/2: both sum to lr·(S + 1)/2.
        area += lr * (after + 1) / 2.0
    elif kind == "constant" or not decay_boundaries:
        area += lr * after
    else:
        # Global step t keeps lr·decay^i while t <= boundaries[i] (PiecewiseConstantDecay).
        edges = [warmup_steps, *(min(int(b) + 1, total_steps) for b in decay_boundaries)]
        edges.append(total_steps)
        for i in range(len(edges) - 1):
            area += lr * decay**i * max(edges[i + 1] - edges[i], 0)
    return area / total_steps

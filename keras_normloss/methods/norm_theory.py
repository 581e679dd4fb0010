"""What theory says a method's factor does to the channel norms: its timescale and its equilibrium.

A factor means something only against the run's length: a pull whose relaxation time is longer
than the run has not acted by its end. For a channel followed by BatchNorm the loss does not
depend on the channel's norm ‖w‖, so what a norm penalty changes there is the channel's
effective learning rate η/‖w‖² and the angle it turns per step; at equilibrium that angle is
set by η, λ and the optimizer (Wan et al., "Spherical motion dynamics", NeurIPS 2021; Kosson,
Messmer, Jaggi, "Rotational equilibrium", ICML 2024, code epfml/REQ).

**Timescales** (steps; η the learning rate, λ the factor, μ SGD's momentum, k the method's
`relaxation_rate` in `methods.table`: 1 weight decay, 2 Norm Loss, 8 SO and SRIP):

| form | relaxation time | why |
|---|---|---|
| coupled penalty, SGD with momentum μ | `(1 − μ) / (k·η·λ)` | momentum sums a steady gradient to `1/(1 − μ)` times itself |
| decoupled update, any optimizer | `1 / (k·η·λ)` | `w ← w − η·k·λ·(…)` outside the optimizer; Wang & Aitchison, ICML 2025: τ_iter = 1/(ηλ) |
| coupled penalty, Adam or AdamW | none | the step is divided by the gradients' running RMS: no rate follows from λ |

η is the schedule's **mean** over the run (`schedules.mean_learning_rate`): over the run a decay
shrinks the weights by `Σ_t η_t·k·λ`, which is the mean times the steps. Under a cosine or linear
schedule the timescale at the mean is twice that at the peak; both are recorded. This is the
decay's own time. A channel followed by BatchNorm, whose norm the gradient noise also grows,
settles faster: under weight decay ‖w‖⁴ relaxes at `4ηλ/(1 − μ)` a step (Wan et al.), 4 times the
decay's rate; Norm Loss's norm, linearised about its equilibrium r*, in
`(1 − μ)/(4ηλ(2 − 3/(2r*)))` steps: the decay's time at r* = 1, a quarter of it for r* ≫ 1 (the
decoupled forms without the 1 − μ; both checked on a NumPy simulation during development,
within 5 %, not by the tests).

**Equilibrium angular update per step** of a scale-invariant channel (constant η; `r` its
norm; G = ‖∇_w L‖·‖w‖, the gradient's size at unit norm, which the norm cannot change):

| method | coupled, SGD with momentum μ | decoupled, SGD μ or Adam(W) β₁ = μ |
|---|---|---|
| weight decay λ | `√(2ηλ / (1 + μ))` (Wan et al.; REQ `sgdm_etar_func`) | `√(2ηλ·(1 − μ)/(1 + μ))` (REQ `adamw_etar_func`) |
| Norm Loss λ | `√(4ηλ·(1 − 1/r) / (1 + μ))` | `√(4ηλ·(1 − 1/r)·(1 − μ)/(1 + μ))` |

Norm Loss's gradient is `2λ·(1 − 1/r)·w`: weight decay of factor λ_eff = 2λ(1 − 1/r), so its
equilibrium is weight decay's at λ_eff. The norm itself (SGD, uncorrelated gradient noise) follows
from the balance between the decay's shrinking, `2η·λ_eff·r²/(1 − μ)` a step in ‖w‖² (coupled),
and the noise's growth, `η²G²/(r²(1 − μ)²)`:

    weight decay: r⁴ = ηG² / (2λ(1 − μ))           Norm Loss: r³(r − 1) = ηG² / (4λ(1 − μ))

(decoupled: (1 − μ)² in place of (1 − μ)). With ε = ηG²/(4λ(1 − μ)):
- ε ≪ 1 (λ strong against the noise): r → 1 + ε and the angle → ηG/√(1 − μ²): **independent of λ**,
  proportional to the gradient's size. Weight decay's angle grows as √λ at every λ.
- ε ≫ 1: r → ε^¼ and Norm Loss is weight decay of factor 2λ (same √λ law).
So Norm Loss should be less sensitive than weight decay to λ where λ is strong. For the batch
size, where the gradient is mostly noise (G² ∝ 1/batch), it should be no less sensitive: at a
fixed η its strong-λ angle grows as G, which grows as the batch shrinks, while weight decay's
does not depend on G; with η scaled linearly with the batch both grow as √batch.
`tests/test_norm_theory.py` checks the SGD formulas on a NumPy simulation and on a BatchNorm
network trained with Keras; the Adam(W) forms are REQ's and ours, not checked here.
"""

import math

from keras_normloss import choices
from keras_normloss.methods import table

TIMESCALE_LR = "mean"  # which learning rate a timescale is taken at: the schedule's mean
_COUPLED_UNDER_ADAM = (
    "a coupled penalty under {optimizer} is divided by the gradients' running RMS: its "
    "timescale depends on the gradients, not on λ alone"
)


def _adaptive(optimizer):
    return optimizer in ("adam", "adamw")


def relaxation_steps(method, factor, lr, optimizer="sgd", momentum=0.0):
    """The relaxation time, in steps, of a method's pull on the channel norms.

    See the module docstring for the formulas: `(1 − μ)/(k·η·λ)` for a coupled penalty under
    SGD with momentum μ, `1/(k·η·λ)` for a decoupled update under any optimizer.

    Args:
        method: a method name (`keras_normloss.methods.names()`).
        factor: its factor λ (or wd).
        lr: the learning rate η (a run's: its schedule's mean, `schedules.mean_learning_rate`).
        optimizer: `"sgd"`, `"adam"` or `"adamw"`.
        momentum: SGD's momentum μ (ignored by the others).

    Returns:
        The relaxation time in steps (`inf` for a zero factor or learning rate), or `None`
        for a method without a factor or a coupled penalty under Adam or AdamW.

    Example:

    ```python
    relaxation_steps("normloss", 1e-4, lr=0.1, momentum=0.9)  # ≈ 5000 (0.1 / 2e-5)
    relaxation_steps("weight-decay-decoupled", 1e-2, lr=0.1)  # ≈ 1000
    ```
    """
    spec = table.get(method)
    if spec.relaxation_rate is None or factor is None:
        return None
    decoupled = spec.kind == "optimizer"
    if not decoupled and _adaptive(optimizer):
        return None
    rate = spec.relaxation_rate * float(lr) * float(factor)
    if rate <= 0:
        return math.inf
    return (1.0 if decoupled or _adaptive(optimizer) else 1.0 - float(momentum)) / rate


def timescale_formula(method, optimizer="sgd"):
    """The timescale's formula as text (`"(1 − μ)/(2·η·λ)"`), or `None` where there is none."""
    spec = table.get(method)
    if spec.relaxation_rate is None:
        return None
    decoupled = spec.kind == "optimizer"
    if not decoupled and _adaptive(optimizer):
        return None
    k = "" if spec.relaxation_rate == 1 else f"{spec.relaxation_rate}·"
    return f"{'1' if decoupled else '(1 − μ)'}/({k}η·λ)"


def timescale(method, factor, *, mean_lr, peak_lr, total_steps, optimizer="sgd", momentum=0.0):
    """A run's timescale record: what `config.json` and `results.json` hold under `timescale`.

    Args:
        method, factor, optimizer, momentum: as `relaxation_steps`.
        mean_lr: the schedule's mean over the run (the timescale is taken at it).
        peak_lr: its largest value.
        total_steps: the run's steps.

    Returns:
        `None` for a method without a factor; else a dict with `steps` (at the mean learning
        rate, `None` where no timescale exists), `fraction_of_run` (steps / total_steps),
        `steps_at_peak_lr`, `learning_rate` (`"mean"`), `mean_lr`, `peak_lr`, `total_steps`,
        `formula`, `acts_within_run` (steps <= total_steps) and, where no timescale exists,
        `why_none`.

    Example:

    ```python
    timescale("normloss", 1e-4, mean_lr=0.05, peak_lr=0.1, total_steps=1263, momentum=0.9)
    # {'steps': 10000.0, 'fraction_of_run': 7.92, ...}
    ```
    """
    if table.get(method).relaxation_rate is None or factor is None:
        return None
    steps = relaxation_steps(method, factor, mean_lr, optimizer, momentum)
    record = {
        "steps": _finite(steps),
        "fraction_of_run": None if steps is None else _finite(steps / total_steps),
        "steps_at_peak_lr": _finite(relaxation_steps(method, factor, peak_lr, optimizer, momentum)),
        "learning_rate": TIMESCALE_LR,
        "mean_lr": _finite(mean_lr),
        "peak_lr": peak_lr,
        "total_steps": total_steps,
        "formula": timescale_formula(method, optimizer),
        "acts_within_run": None if steps is None else steps <= total_steps,
    }
    if steps is None:
        record["why_none"] = _COUPLED_UNDER_ADAM.format(optimizer=optimizer)
    return record


def _finite(value):
    # JSON has no infinity: a zero factor's timescale is recorded as null with acts_within_run
    # False. Six significant digits: 5000.0, not 4999.999999999998.
    return None if value is None or math.isinf(value) else float(f"{value:.6g}")


def timescale_warning(method, factor, record):
    """The `WARNING:` line a run prints when its method cannot act within it, else `None`.

    Args:
        method, factor: the run's.
        record: its `timescale(...)` record (or `None`).

    Example:

    ```python
    record = timescale("weight-decay", 1e-5, mean_lr=0.05, peak_lr=0.1, total_steps=1263,
                       momentum=0.9)
    timescale_warning("weight-decay", 1e-5, record)  # 'WARNING: --method weight-decay ...'
    ```
    """
    if not record or record["acts_within_run"] in (None, True):
        return None
    total = record["total_steps"]
    if record["steps"] is None:  # an infinite timescale
        zero = "--factor 0" if not factor else f"a learning rate of {record['mean_lr']:g}"
        return f"WARNING: --method {method} with {zero} does nothing to the weight norms."
    needed = factor * record["steps"] / total
    return (
        f"WARNING: --method {method} --factor {factor:g}: its timescale, {record['formula']}, is "
        f"about {record['steps']:,.0f} steps at the schedule's mean learning rate "
        f"{record['mean_lr']:.3g}, {record['fraction_of_run']:.3g} times this run's "
        f"{total:,} steps: the run ends before the decay has had that time (channels followed "
        f"by BatchNorm settle up to 4 times sooner). A factor of at least {needed:.3g} acts "
        "within the run."
    )


def equilibrium_angular_update(
    method, factor, lr, *, optimizer="sgd", momentum=0.0, nesterov=False, beta_1=0.9, norm=None
):
    """The angle (radians) a scale-invariant channel turns per step at equilibrium.

    See the module docstring for the formulas and their sources. The angle is the RMS over
    steps and channels (what the norm balance fixes); the mean angle is a little smaller.

    Args:
        method: `weight-decay`, `weight-decay-decoupled`, `normloss` or `normloss-decoupled`.
        factor: λ (or wd).
        lr: the learning rate η at the step (the theory assumes it constant).
        optimizer: `"sgd"`, `"adam"` or `"adamw"`.
        momentum: SGD's μ.
        nesterov: SGD's Nesterov momentum, for which no equilibrium is derived here (REQ's
            SGD wrapper refuses it too): then `None`.
        beta_1: Adam's β₁, the μ of the decoupled formula under Adam or AdamW.
        norm: the channel norm r, which Norm Loss's angle depends on.

    Returns:
        The angle, or `None` where no equilibrium is known: other methods, a coupled penalty
        under Adam or AdamW, Nesterov momentum, Norm Loss without `norm`, or Norm Loss at r <= 1 (noise only grows
        a scale-invariant channel, so an equilibrium has r > 1).

    Example:

    ```python
    equilibrium_angular_update("weight-decay", 5e-4, 0.1, momentum=0.9)  # 0.00725...
    ```
    """
    spec = table.get(method)
    if method not in ("weight-decay", "weight-decay-decoupled", "normloss", "normloss-decoupled"):
        return None
    decoupled = spec.kind == "optimizer"
    if _adaptive(optimizer):
        if not decoupled:
            return None
        mu = float(beta_1)
    elif nesterov:
        return None
    else:
        mu = float(momentum)
    if method.startswith("normloss"):
        if norm is None or norm <= 1.0:
            return None
        decay = 2.0 * float(factor) * (1.0 - 1.0 / float(norm))
    else:
        decay = float(factor)
    shrink = (1.0 - mu) if decoupled else 1.0
    return math.sqrt(2.0 * float(lr) * decay * shrink / (1.0 + mu))


def equilibrium_norm(method, factor, lr, gradient_scale, *, momentum=0.0):
    """The channel norm at which the decay balances the gradient noise (SGD, constant η).

    Args:
        method: `weight-decay`, `weight-decay-decoupled`, `normloss` or `normloss-decoupled`.
        factor: λ (or wd), positive.
        lr: η.
        gradient_scale: G = ‖∇_w L‖·‖w‖, the RMS gradient's size at unit norm.
        momentum: μ.

    Returns:
        r* (see the module docstring): `(ηG²/(2λ(1 − μ)))^¼` for weight decay, the root above 1
        of `r³(r − 1) = ηG²/(4λ(1 − μ))` for Norm Loss; `(1 − μ)²` in place of `(1 − μ)` for the
        decoupled forms.

    Example:

    ```python
    equilibrium_norm("normloss", 1e-2, 0.1, gradient_scale=0.1, momentum=0.9)  # 1.16: r³(r − 1) = 0.25
    ```
    """
    decoupled = table.get(method).kind == "optimizer"
    memory = (1.0 - momentum) ** (2 if decoupled else 1)
    if method.startswith("weight-decay"):
        return (lr * gradient_scale**2 / (2.0 * factor * memory)) ** 0.25
    if not method.startswith("normloss"):
        raise ValueError(
            "Invalid value for argument `method`: expected a weight-decay or normloss method. "
            f"Received: method={method!r}"
        )
    epsilon = lr * gradient_scale**2 / (4.0 * factor * memory)
    # r³(r − 1) rises monotonically from 0 at r = 1: bisect between 1 and a bound above the root.
    low, high = 1.0, 1.0 + epsilon + epsilon**0.25
    for _ in range(200):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if mid**3 * (mid - 1.0) < epsilon else (low, mid)
    return 0.5 * (low + high)


def equilibrium_groups(model, lr_schedule, lr_decay_epochs=()):
    """The layer kinds of a run for which the equilibrium predictions apply, or `()`.

    They need a constant learning rate (`constant`, or `step` without decays) and channels
    followed by BatchNorm: every convolution of the package's CIFAR and ImageNet ResNets
    (conv → BN). Not the Wide ResNets, whose pre-activation blocks feed their second and
    shortcut convolutions (and the stem) into an addition; nor the classifier anywhere.

    Args:
        model: the run's model name (`keras_normloss.models.names()`).
        lr_schedule: its schedule's kind.
        lr_decay_epochs: the step schedule's decay epochs.

    Returns:
        A tuple of `norm_dynamics` group names.

    Example:

    ```python
    equilibrium_groups("resnet20", "constant")  # ('stem', 'conv', 'shortcut')
    equilibrium_groups("resnet20", "cosine")  # ()
    ```
    """
    constant = lr_schedule == "constant" or (lr_schedule == "step" and not lr_decay_epochs)
    if not constant or model.startswith("wrn"):
        return ()
    return ("stem", "conv", "shortcut")


def predicted_angle(run, group, learning_rate, norm):
    """The equilibrium angle predicted for one sample of a run's dynamics.csv, or None.

    The one rule that `results.json`'s `dynamics` and `keras-normloss plot --dynamics` share:
    `equilibrium_angular_update` at the sample's learning rate and mean norm, for a group that
    `equilibrium_groups` admits.

    Args:
        run: the run's settings, a mapping with config.json's keys (`method` or the older
            `regularizer`, `factor`, `model`, `momentum`, and, where present, `optimizer`,
            `nesterov`, `lr_schedule`, `lr_decay_epochs`).
        group: the sample's layer kind.
        learning_rate: the sample's η.
        norm: the group's mean channel norm.

    Example:

    ```python
    run = dict(method="weight-decay", factor=5e-4, model="resnet20", momentum=0.9,
               lr_schedule="constant")
    predicted_angle(run, "conv", 0.1, norm=1.2)  # 0.00725...
    ```
    """
    groups = equilibrium_groups(
        run["model"], run.get("lr_schedule", "step"), run.get("lr_decay_epochs", ())
    )
    if group not in groups:
        return None
    return equilibrium_angular_update(
        choices.upgrade_record(run)["method"],  # `regularizer` in runs made before the rename
        run["factor"],
        learning_rate,
        optimizer=run.get("optimizer", "sgd"),
        momentum=run["momentum"],
        nesterov=run.get("nesterov", False),
        norm=norm,
    )

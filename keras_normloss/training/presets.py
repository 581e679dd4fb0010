"""The papers' training settings, as data. The one place they are written down.

Every preset trains with every method of `keras_normloss.methods` (`--method`):
`weight_decay` is the papers' weight decay (PyTorch convention, see
`keras_normloss.weight_decay`); `normloss_factor` is **our** default λ, not
the paper's: the factor used by Georgiou et al. is not in the text available
to us. We chose it from the relaxation time of a channel norm under SGD with
momentum μ, about `(1 − μ) / (2 · lr · λ)` steps
(`keras_normloss.methods.norm_theory`), so that the norms reach the unit
sphere within the first learning-rate phase of each schedule (an earlier
version of this table left out the `1 − μ`, and gave ten times these):

| preset | steps per epoch | λ | timescale at the initial lr 0.1, μ 0.9 |
|---|---|---|---|
| CIFAR, batch 128 | 390 | 1e-3 | 500 steps ≈ 1.3 epochs of 80-160 |
| ImageNet, batch 256 | 5,004 | 1e-4 | 5,000 steps ≈ 1 epoch of 90 |
| quick | 390 | 1e-2 | 50 steps ≈ 0.13 epoch of 5 |
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Preset:
    """One paper's training setting.

    Attributes:
        name: the preset's name.
        dataset: `cifar10`, `cifar100` or `imagenet2012`.
        model: a name from `keras_normloss.models.names()`.
        batch_size: the global batch size.
        lr: the initial learning rate at `batch_size` (scaled linearly with
            the global batch if `lr_scales_with_batch`).
        epochs: the training length.
        lr_decay_epochs: epochs at which the learning rate is multiplied by
            `lr_decay`.
        lr_decay: the factor.
        momentum, nesterov: SGD's.
        weight_decay: the paper's weight decay (gradient `wd · w`).
        normloss_factor: our default Norm Loss λ (see the module docstring).
        dropout: dropout rate (Wide ResNets).
        lr_scales_with_batch: scale `lr` by `global batch / batch_size`.
        weight_decay_on: which parameters the reference decays: `"all"`
            (every trainable parameter, BatchNormalization's gamma and beta
            and the classifier's bias included, as `SGD(model.parameters(),
            weight_decay=wd)` and Torch's `optim.sgd` on the flattened
            parameters do) or `"kernels"` (conv and Dense kernels only, as
            many recent recipes).
        crop_padding: how the reference fills the border of its random crop
            (`"zeros"` or `"reflect"`; see `keras_normloss.data`).
        lr_schedule: `"step"` (the papers': x`lr_decay` at `lr_decay_epochs`), `"linear"`
            (to zero at the end) or `"cosine"`; see `keras_normloss.schedules`.
        warmup_epochs: epochs of linear warmup from 0 to `lr` (0: none).
        validation_split: training images held out for validation (a fraction < 1, or a
            count); 0: none (the papers' presets, which report test error only).
        augment: the training augmentation (`keras_normloss.data.AUGMENTATIONS`), or None
            for the dataset's default.
        precise_bn: training batches over which BatchNormalization's statistics are
            recomputed before each evaluation (`keras_normloss.batch_norm`); 0: the moving
            averages, as the papers.
        source: where the settings come from.
        run_here: the command that ran it on this project's machines and the result it
            gave, or why it has not been run.
        orthogonality_factor: the default λ of `so` and `srip`: the initial
            `--ortho-decay` of Bansal et al.'s reference code (1e-2 on CIFAR
            and SVHN, 1e-6 on ImageNet), which decays it by a schedule where
            ours stays constant. The reference ships no SO code; SO takes
            SRIP's λ, as both pull a singular value s by the gradient of
            λ(s² − 1)² (SO every s, SRIP the farthest from 1).
    """

    name: str
    dataset: str
    model: str
    batch_size: int
    lr: float
    epochs: int
    lr_decay_epochs: tuple
    lr_decay: float
    momentum: float
    nesterov: bool
    weight_decay: float
    normloss_factor: float
    source: str
    dropout: float = 0.0
    lr_scales_with_batch: bool = False
    weight_decay_on: str = "all"
    crop_padding: str = "zeros"
    run_here: str = ""
    orthogonality_factor: float = 1e-2
    lr_schedule: str = "step"
    warmup_epochs: float = 0.0
    validation_split: float = 0.0
    augment: object = None
    precise_bn: int = 0


_NOT_RUN_PAPER = (
    "Not run here: the development machine has 2 CPU cores and no GPU, where a full schedule "
    "takes from 17 hours (ResNet-110 on CIFAR, at the fastest step time measured here) to "
    "weeks (WRN-28-10, ResNet-50), and no network to prepare the dataset."
)


_RESNET110 = dict(
    model="resnet110",
    batch_size=128,
    lr=0.1,
    epochs=160,
    lr_decay_epochs=(80, 120),
    lr_decay=0.1,
    momentum=0.9,
    nesterov=False,
    weight_decay=1e-4,
    normloss_factor=1e-3,
    run_here=_NOT_RUN_PAPER,
    source=(
        "He et al., Deep Residual Learning, CVPR 2016, sec. 4.2 (ResNet-110 on "
        "CIFAR; lr 0.1, /10 twice, wd 1e-4, momentum 0.9, batch 128), as used "
        "by Georgiou et al., Norm Loss, ICPR 2020; 160 epochs with decays at "
        "80 and 120 as in this project's brief. He et al. also warm up at lr "
        "0.01 for 400 iterations, which this preset does not. Weight decay on "
        "every parameter and zero-padded crops, as fb.resnet.torch (Facebook's "
        "Torch reproduction, which the PBWN and ONI CIFAR code follow)."
    ),
)

_WRN28_10 = dict(
    model="wrn28_10",
    batch_size=128,
    lr=0.1,
    epochs=200,
    lr_decay_epochs=(60, 120, 160),
    lr_decay=0.2,
    momentum=0.9,
    nesterov=True,
    weight_decay=5e-4,
    normloss_factor=1e-3,
    dropout=0.3,
    crop_padding="reflect",
    run_here=_NOT_RUN_PAPER,
    source=(
        "Zagoruyko & Komodakis, Wide Residual Networks, BMVC 2016, sec. 3 "
        "(SGD Nesterov 0.9, lr 0.1 x0.2 at epochs 60, 120, 160 of 200, wd "
        "5e-4, batch 128, dropout 0.3), as used by Georgiou et al., Norm Loss, "
        "ICPR 2020. Weight decay on every parameter and reflection-padded "
        "crops, as the authors' code (scripts/train_cifar.sh: "
        "randomcrop_type=reflection)."
    ),
)

# The short-budget recipe of every Fashion-MNIST preset, the same for every method: linear decay
# to zero over the whole run (Li et al., ICLR 2020) after a warmup of 0.3 epochs (without it,
# BatchNorm at lr 0.1 gave 89.7 % test error after the first epoch), 10 % of the training images
# held out for validation (the same for every seed).
_FASHION_MNIST = dict(
    dataset="fashion_mnist",
    batch_size=128,
    lr=0.1,
    lr_scales_with_batch=True,
    lr_decay=0.1,
    lr_decay_epochs=(),
    lr_schedule="linear",
    warmup_epochs=0.3,
    validation_split=0.1,
    momentum=0.9,
    nesterov=False,
    weight_decay=1e-3,
    normloss_factor=1e-2,
)

# What was measured with the Fashion-MNIST presets (docs/results.md and the first command).
STUDY_EPOCHS = 3
STUDY_RUN_HERE = (
    "Run here as the study of benchmarks/fashion_mnist_study.py (all 5 phases, 64 runs; "
    "float32, `--deterministic`; a run took 3.5-4.6 minutes on the quiet 2-core machine, "
    "3-10 beside other work): over seeds 0-4 at batch 128, `none` ended at 9.55 ± 0.30 % final "
    "test error (9.28-9.95 %), Norm Loss at its chosen 1e-4 at 9.56 ± 0.24 % and weight decay "
    "at its chosen 1e-5 at 9.42 ± 0.25 % (a comparison that tested nothing: at those factors "
    "neither penalty acted within the 1,263-step runs, and the runs underfit); from batch 32 to "
    "512 (seed "
    "0, lr scaled) Norm Loss went from 8.99 to 11.64 % and weight decay from 9.01 to 11.39 %; "
    "the other methods at their defaults (seeds 0-2) ended at 8.75 (ONI) to 9.78 % (SO). "
    "Before it (seed 0): with crop-and-flip, 3 epochs of `none` ended at 12.01 % test error "
    "(train error 13.9 %: the network underfits, so augmentation only slows it). See "
    "docs/first-study.md."
)
SMALL_RUN_HERE = (
    "Run here: `keras-normloss train --preset fashion-mnist-small --output runs/first` gave a "
    "final test error of 10.63 % (validation 10.13 %) with seed 0, 11.27 % (9.80 %) with seed 1 "
    "and 11.17 % (9.47 %) with seed 2, after 8 epochs of training that took 1 min 40 s to 1 min "
    "54 s; the whole command, with the venv in place, 1 min 47 s to 2 min 31 s, on the quiet "
    "2-core machine (2026-12-06). Test error per epoch (seed 0): 31.3, 24.2, 18.7, 30.7, 13.0, "
    "13.0, 11.2, 10.6 %. With 5 epochs (the preset before 2026-12-06): 13.30 %."
)

QUICK_RUN_HERE = (
    "Not run here on CIFAR-10 (no network to prepare it). On the Fashion-MNIST subset shipped "
    "with the package, `keras-normloss train --preset quick --dataset fashion_mnist_small "
    "--epochs 1 --steps-per-epoch 40` (seed 0) ended at 44.93 % test error, in a 21 s epoch on "
    "the quiet 2-core machine: 88.43 % with `--precise-bn 0`, and 71.27 % with the step "
    "schedule without warmup that `quick` had before. The tests run it on synthetic data."
)

PRESETS = {
    "cifar10-resnet110": Preset(name="cifar10-resnet110", dataset="cifar10", **_RESNET110),
    "cifar100-resnet110": Preset(name="cifar100-resnet110", dataset="cifar100", **_RESNET110),
    "cifar10-wrn28-10": Preset(name="cifar10-wrn28-10", dataset="cifar10", **_WRN28_10),
    "cifar100-wrn28-10": Preset(name="cifar100-wrn28-10", dataset="cifar100", **_WRN28_10),
    "imagenet-resnet50": Preset(
        name="imagenet-resnet50",
        dataset="imagenet2012",
        model="resnet50",
        batch_size=256,
        lr=0.1,
        lr_scales_with_batch=True,
        epochs=90,
        lr_decay_epochs=(30, 60),
        lr_decay=0.1,
        momentum=0.9,
        nesterov=False,
        weight_decay=1e-4,
        normloss_factor=1e-4,
        orthogonality_factor=1e-6,
        run_here=_NOT_RUN_PAPER,
        source=(
            "He et al., CVPR 2016, sec. 3.4 and Goyal et al., Accurate, Large "
            "Minibatch SGD, 2017 (lr 0.1 per 256 images, scaled linearly with "
            "the global batch; x0.1 every 30 epochs of 90; wd 1e-4), as used by "
            "Georgiou et al., Norm Loss, ICPR 2020. Weight decay on every "
            "parameter, as torchvision's reference scripts by default."
        ),
    ),
    "quick": Preset(
        name="quick",
        dataset="cifar10",
        model="resnet20",
        batch_size=128,
        lr=0.1,
        epochs=5,
        lr_decay_epochs=(),
        lr_decay=0.1,
        lr_schedule="linear",
        warmup_epochs=0.3,
        precise_bn=10,
        momentum=0.9,
        nesterov=False,
        weight_decay=1e-4,
        normloss_factor=1e-2,
        run_here=QUICK_RUN_HERE,
        source=(
            "Ours: a short ResNet-20 run on CIFAR-10 (about a minute per epoch on 2 CPU cores) "
            "to try the pipeline; not a paper's setting and not expected to reach a paper's "
            "accuracy. Warmup (0.3 epoch) and linear decay to zero over the run's own steps, so "
            "that `--epochs 1 --steps-per-epoch 40` learns too, and BatchNormalization's "
            "statistics recomputed over 10 training batches before each evaluation: after 40 "
            "steps the moving averages describe weights long gone."
        ),
    ),
    "fashion-mnist": Preset(
        name="fashion-mnist",
        model="resnet8",
        epochs=STUDY_EPOCHS,
        augment="none",
        run_here=STUDY_RUN_HERE,
        source=(
            "Ours: the preset of benchmarks/fashion_mnist_study.py (ResNet-8 on the full "
            "Fashion-MNIST on 2 CPU cores); not a paper's setting. lr 0.1 per 128 images, "
            "scaled linearly with the batch (Goyal et al. 2017), linear decay to zero after a "
            "0.3-epoch warmup (Li et al., ICLR 2020), no augmentation (in 3 epochs the network "
            "underfits: crop-and-flip gave 12.0 % where none gave 9.8 %), all fixed on `none` "
            "before any other method was run; 10 % of the training images held out for "
            "validation; wd 1e-3 and λ 1e-2 are defaults only: the study chooses each "
            "method's factor on validation."
        ),
        **_FASHION_MNIST,
    ),
    "fashion-mnist-small": Preset(
        name="fashion-mnist-small",
        model="resnet8",
        epochs=8,
        augment="none",
        run_here=SMALL_RUN_HERE,
        source=(
            "Ours: the README's first command, ResNet-8 on the 15,000 + 3,000 Fashion-MNIST "
            "images shipped with the package (no download), 1,500 of them held out for "
            "validation; 8 epochs, linear decay to zero after a 0.3-epoch warmup, no "
            "augmentation (in a few epochs a network this small underfits rather than overfits: "
            "crop-and-flip gave 16.0 % after 6 epochs where none gave 13.3 % after 5); to try the "
            "package in three minutes, not a benchmark."
        ),
        **{**_FASHION_MNIST, "dataset": "fashion_mnist_small"},
    ),
    "fashion-mnist-mini": Preset(
        name="fashion-mnist-mini",
        model="resnet20",
        epochs=3,
        run_here=(
            "Run here with the papers' step schedule and no warmup (before the short-budget "
            "recipe): `keras-normloss train --preset fashion-mnist-mini --output runs/first` gave "
            "a final test error of 27.5 % (seed 0) in 5 min 26 s on the 2-core machine while it "
            "ran other work, and 89.7 % after the first epoch. Not re-run with the recipe it has "
            "now (linear decay, warmup, 400 images held out)."
        ),
        source=(
            "Ours: ResNet-20 on the 4,000 Fashion-MNIST images shipped with the package (no "
            "download), 3 epochs; the tests' small real dataset, not a benchmark."
        ),
        **{**_FASHION_MNIST, "dataset": "fashion_mnist_mini"},
    ),
}


def get(name):
    """Returns the preset called `name`.

    Args:
        name: one of `PRESETS`: `cifar10-resnet110`, `cifar100-resnet110`,
            `cifar10-wrn28-10`, `cifar100-wrn28-10`, `imagenet-resnet50`,
            `quick`, `fashion-mnist`, `fashion-mnist-small`, `fashion-mnist-mini`.

    Returns:
        A `Preset`.

    Raises:
        ValueError: for an unknown name, listing the known ones.

    Example:

    ```python
    get("cifar100-wrn28-10").lr_decay_epochs  # (60, 120, 160)
    ```
    """
    if name not in PRESETS:
        raise ValueError(
            f"Invalid value for argument `preset`: expected one of {sorted(PRESETS)}. "
            f"Received: preset={name!r}"
        )
    return PRESETS[name]


def default_factor(preset, method, lr=None):
    """The factor a method (`keras_normloss.methods`) uses under a preset when none is given.

    `weight-decay`: the paper's weight decay; `normloss`: our default λ. The
    decoupled methods keep the relaxation time of the coupled default under
    the preset's SGD: a coupled penalty's step, `lr·2λ·(‖w‖ − 1)` for Norm
    Loss and `lr·wd·w` for weight decay, is amplified about `1/(1 − μ)` times
    by momentum μ at steady state, while a decoupled step is `lr_run·2λ'·…`
    whatever the optimizer, so

        λ' = λ · lr_preset / ((1 − μ) · lr_run)

    (10× the coupled λ under the preset's own SGD at μ = 0.9; 1,000× at Adam's
    lr 1e-3 against the preset's 0.1). The norms then move toward 1 in as
    many steps as under the coupled default. Methods without a factor: `None`.

    Args:
        preset: a `Preset`.
        method: a method name.
        lr: the run's initial learning rate; `None` means the preset's.

    Example:

    ```python
    default_factor(get("quick"), "normloss-decoupled")  # 0.1: 1e-2 / (1 - 0.9)
    default_factor(get("quick"), "normloss-decoupled", lr=1e-3)  # 10.0: Adam's lr
    ```
    """
    lr = preset.lr if lr is None else lr
    gain = preset.lr / ((1.0 - preset.momentum) * lr)
    return {
        "weight-decay": preset.weight_decay,
        "normloss": preset.normloss_factor,
        "so": preset.orthogonality_factor,
        "srip": preset.orthogonality_factor,
        "weight-decay-decoupled": preset.weight_decay * gain,
        "normloss-decoupled": preset.normloss_factor * gain,
    }.get(method)

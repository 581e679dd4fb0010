"""The tiny runs the tests train: the `quick` preset on synthetic data, a small batch, ResNet-8
(the smallest registered model: a third of ResNet-20's layers to build and trace), and a
constant learning rate from the first step, as `quick` had before it gained a warmup and a decay
over the run's own steps. The tests' expectations are written for that rate: a timescale of
(1 − μ)/(2·0.1·λ) steps, the rate logged at 0.1, a run that diverges at its first step under a
huge `--lr`."""

CONSTANT_LR = ["--lr-schedule", "constant", "--warmup-epochs", "0"]


def tiny_run(batch_size, model="resnet8"):
    """`keras-normloss train` arguments of a tiny run (add `--epochs`, `--output`, ...);
    `model=None` keeps the preset's ResNet-20."""
    args = ["--preset", "quick", "--dataset", "synthetic", "--batch-size", str(batch_size)]
    return args + (["--model", model] if model else []) + CONSTANT_LR

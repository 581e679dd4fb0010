"""What the tests' small runs add to the `quick` preset: a constant learning rate from the first
step, as `quick` had before it gained a warmup and a decay over the run's own steps. The tests'
expectations are written for it: a timescale of (1 − μ)/(2·0.1·λ) steps, the rate logged at 0.1,
a run that diverges at its first step under a huge `--lr`."""

CONSTANT_LR = ["--lr-schedule", "constant", "--warmup-epochs", "0"]

"""How a run computes: mixed precision (the dtype policy), XLA (`jit_compile`), and the
combinations this machine cannot run, refused before anything is built.

The Norm Loss penalty is computed in float32 whatever the policy (`NormLoss` casts 16-bit kernels;
under Keras's mixed policies the variables are float32 anyway), and the classifier computes its
logits in float32 (`models.building_blocks`), as Keras's mixed-precision guide advises for the
layer that feeds the softmax.
"""

import contextlib

import keras

from keras_normloss import errors

_BACKEND_NAMES = {"tensorflow": "TensorFlow", "jax": "JAX"}
POLICIES = {"off": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}
JIT_COMPILE = {"auto": "auto", "on": True, "off": False}


def _cpu_flags():
    """The CPU's feature flags (Linux), or an empty set where /proc/cpuinfo is missing."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@contextlib.contextmanager
def dtype_policy(mixed_precision):
    """Sets Keras's global dtype policy for `--mixed-precision` inside the block, and puts the
    previous one back after it (so that in-process callers, notebooks and tests keep theirs).

    Under "mixed_float16", `Model.compile` wraps the optimizer in a `LossScaleOptimizer` by itself
    (Keras 3.15, `Trainer.compile(auto_scale_loss=True)`); bfloat16 needs no loss scaling.
    """
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(POLICIES[mixed_precision])
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def check(config, distribution):
    """Refuses settings this machine cannot run, or runs so slowly that it must be a mistake.

    Args:
        config: the `RunConfig`.
        distribution: the run's devices (`training.distribution.make_distribution`).

    Returns:
        A list of one-line notes to print (settings that run, slowly).

    Raises:
        keras_normloss.errors.UsageError: for float16 without a GPU (or a CPU
            with native float16), and for XLA over several CPU replicas of tf.distribute.

    Example:

    ```python
    for note in check(config, make_distribution(config.strategy)):
        print(note)
    ```
    """
    notes = []
    gpu = distribution.has_gpu
    flags = _cpu_flags()
    on_tpu = distribution.on_tpu
    if config.mixed_precision == "float16" and not gpu:
        # Refused rather than warned about: float16 is a GPU setting, and asking for it where
        # TensorFlow sees no GPU is most often a GPU that is not visible (drivers, CUDA_VISIBLE_
        # DEVICES). On a CPU without native float16 it is emulated: a ResNet-20 step (batch 128)
        # took 1.9 s against 0.7 s in float32 on 2 x86 cores without AVX512-FP16 (2.7x; 3.1x
        # at batch 32; 12x in an earlier measurement on this machine).
        if not flags & {"avx512_fp16", "amx_fp16"}:
            raise errors.UsageError(
                f"--mixed-precision float16 needs a GPU and {_BACKEND_NAMES[distribution.backend]} "
                "sees none; on this CPU "
                "(no AVX512-FP16) float16 is emulated, about 3x slower than float32: use "
                "--mixed-precision off"
            )
        notes.append("NOTE: float16 on a CPU has not been measured by keras-normloss.")
    if config.mixed_precision == "bfloat16" and not gpu and not on_tpu:
        if not flags & {"avx512_bf16", "amx_bf16"}:
            notes.append(
                "NOTE: --mixed-precision bfloat16 on a CPU without native bfloat16 "
                "(AVX512-BF16 or AMX) is emulated: 7-10x slower than float32 (measured)."
            )
    if config.jit_compile == "on" and distribution.replicates_on_cpus:
        # Tried (TF 2.21, Keras 3.15.1, MirroredStrategy over 2 logical CPUs, jit_compile=True):
        # the first step fails with InvalidArgumentError "Trying to access resource
        # .../replica_1/... located in device CPU:1 from device CPU:0"
        # (https://www.tensorflow.org/xla/known_issues#tfvariable_on_a_different_device).
        raise errors.UsageError(
            "--jit-compile on cannot run with several CPU replicas (TensorFlow's XLA cannot "
            "reach a variable on another CPU device); use --jit-compile off, or "
            "--strategy one-device"
        )
    return notes

"""The devices of a run on JAX: `keras.distribution.DataParallel` for what `--strategy` names,
behind the interface `training.distribution` describes.

    auto         all local devices if there is more than one accelerator (GPU, TPU), else one
    mirrored     all local devices, CPUs too (several host devices in tests:
                 XLA_FLAGS=--xla_force_host_platform_device_count=2)
    one-device   the first device
    tpu          all local TPU devices (refused where JAX sees no TPU)
    multiworker  `keras.distribution.initialize()` (jax.distributed), then all global devices

DataParallel is one SPMD program: the weights are replicated, each device takes a slice of the
global batch, and `jit` inserts the all-reduces, so a step on N devices computes what a step on
one computes (BatchNormalization's statistics too: they are reductions over the global batch).
The distribution must exist before the model is built (variables get their layout when they are
created): build, restore and `fit` inside `scope()`.

Multi-process (`--strategy multiworker`): every process runs the same command. Keras reads
`KERAS_DISTRIBUTION_JOB_ADDRESSES` (the coordinator's host:port, first of a comma-separated list),
`KERAS_DISTRIBUTION_NUM_PROCESSES` and `KERAS_DISTRIBUTION_PROCESS_ID` (0 is the chief, which
writes the outputs); under SLURM, Open MPI, Kubernetes or on Cloud TPU JAX finds them itself.
Each process computes the global batch (a function of seed, epoch and step) and feeds its own
contiguous part (`auto_shard_dataset=False`: our pipelines are not tf.data).
"""

import contextlib
import os
import platform

import jax
import keras
import numpy as np

from keras_normloss import errors
from keras_normloss.training.machine import installed_version, jax_sees_a_gpu

# XLA's flag for deterministic GPU reductions (scatter-add, ...); CPU XLA is deterministic.
_DETERMINISTIC_GPU_FLAG = "--xla_gpu_deterministic_ops=true"


def make_deterministic():
    """Asks XLA for deterministic GPU operations (`--deterministic`).

    XLA reads `XLA_FLAGS` when JAX starts its backend (the first computation); a process that
    started it already (a notebook, a test) keeps its setting. On CPUs XLA is deterministic
    without it.

    Example:

    ```python
    make_deterministic()  # before JAX's first computation
    ```
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if _DETERMINISTIC_GPU_FLAG not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {_DETERMINISTIC_GPU_FLAG}".strip()


def _name(device):
    return f"{device.platform}:{device.id}"


class _ProcessPart(keras.utils.PyDataset):
    """This process's contiguous part of each batch of a `PyDataset` (multi-process only)."""

    def __init__(self, dataset, process, processes):
        super().__init__()
        self.dataset, self.process, self.processes = dataset, process, processes

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        return _part(self.dataset[index], self.process, self.processes)


class _LogsReadInTheMainThread(keras.callbacks.Callback):
    """Keeps Keras from reading evaluation logs in threads of its own, which deadlocks XLA on
    several CPU devices.

    Keras dispatches `on_test_batch_end` to a thread pool when no callback overrides it
    (Keras 3.15, `CallbackList._configure_async_dispatch`); each of those threads waits for a
    step's logs (`np.asarray`). With two host devices on a 2-core machine the evaluation then
    hung in 2 of 3 runs, at the end of an epoch: an all-reduce waited 40 s for a device that
    never arrived, and XLA aborted the process ("Termination timeout for all reduce"). Those
    waits take XLA:CPU's few pool threads, which the other device's half of the step needs.
    A callback that overrides the hooks makes Keras call them in order in the main thread:
    then 5 of 5 runs passed.
    """

    def on_test_batch_end(self, batch, logs=None):
        pass

    def on_predict_batch_end(self, batch, logs=None):
        pass


def _part(batch, process, processes):
    def rows(array):
        size = len(array) // processes
        return array[process * size : (process + 1) * size]

    return tuple(rows(np.asarray(a)) for a in batch)


class KerasDistribution:
    """A run's devices on JAX (see the module docstring).

    Args:
        name: `--strategy` (`config.STRATEGIES`).
        deterministic: deterministic XLA operations on GPUs (`make_deterministic`).

    Raises:
        ValueError: if the strategy cannot run here (`tpu` without a TPU; `multiworker`
            whose processes cannot reach each other).

    Example:

    ```python
    distribution = KerasDistribution("mirrored")  # all local devices
    with distribution.scope():
        model = build()
        model.fit(...)
    ```
    """

    backend = "jax"

    def __init__(self, name, deterministic=False):
        if deterministic:
            make_deterministic()
        self.name = name
        if name == "multiworker":
            # jax.distributed.initialize with the KERAS_DISTRIBUTION_* variables (or a
            # cluster's own); it must come before any computation.
            try:
                keras.distribution.initialize()
            except (ValueError, RuntimeError) as error:
                first_line = (str(error).splitlines() or [""])[0]
                raise ValueError(
                    f"{first_line} (jax.distributed); set KERAS_DISTRIBUTION_JOB_ADDRESSES "
                    "(the chief's host:port), KERAS_DISTRIBUTION_NUM_PROCESSES and "
                    "KERAS_DISTRIBUTION_PROCESS_ID in every process, or run under SLURM, Open "
                    "MPI or Kubernetes, which JAX reads itself"
                ) from None
        local = jax.local_devices()
        accelerators = [d for d in local if d.platform != "cpu"]
        if name == "tpu" and not any(d.platform == "tpu" for d in local):
            raise ValueError(f"JAX sees no TPU (its devices: {', '.join(map(_name, local))})")
        if name == "multiworker":
            self.devices = jax.devices()
        elif name in ("mirrored", "tpu") or (name == "auto" and len(accelerators) > 1):
            self.devices = local
        else:
            self.devices = local[:1]
        self.distribution = None
        if len(self.devices) > 1:
            self.distribution = keras.distribution.DataParallel(
                devices=self.devices, auto_shard_dataset=False
            )
        self.replicas = len(self.devices)
        self.process, self.processes = jax.process_index(), jax.process_count()
        self.chief = self.process == 0
        self.multi_worker = self.processes > 1
        self.has_gpu = jax_sees_a_gpu()
        self.on_tpu = any(d.platform == "tpu" for d in self.devices)
        # XLA under jit runs the same program on every device: nothing like tf.distribute's
        # per-device variables, which XLA cannot reach on CPUs (see `compute.check`).
        self.replicates_on_cpus = False

    def scope(self):
        """The distribution's scope (or nothing, on one device): build, restore and `fit` in it."""
        if self.distribution is None:
            return contextlib.nullcontext()
        return self.distribution.scope()

    def check_sizes(self, batch_size, info):
        """Refuses a global batch, or an evaluation split's last batch, that does not divide
        over the devices.

        Under DataParallel each batch is split evenly over the devices (a batch of 7 on 2
        devices fails in JAX with "IndivisibleError"), the last, smaller batch of the test and
        validation splits too. Padding it would change the test loss, dropping images the test
        error, so such a split is refused, before anything is built.

        Raises:
            keras_normloss.errors.UsageError: naming the batch or split and what to do.
        """
        n = self.replicas
        if batch_size % n:
            raise errors.UsageError(
                f"--batch-size {batch_size} does not split over {n} devices; choose a multiple "
                f"of {n}, or --strategy one-device"
            )
        for split, images in (
            ("test", info.test_examples),
            ("validation", info.validation_examples),
        ):
            last = images % batch_size
            if last % n:
                raise errors.UsageError(
                    f"the {split} split's last batch ({images:,} images at batch {batch_size}: "
                    f"{last} left) does not split over {n} devices, as JAX's data parallelism "
                    f"needs; choose a --batch-size that leaves a multiple of {n} (or none)"
                    + (", or a --validation-split count that does" if split == "validation" else "")
                    + ", or --strategy one-device"
                )

    def prepare(self, model):
        """Nothing to do on JAX (the model's variables took their layout when built)."""

    def callbacks(self):
        """The callbacks these devices need in `fit`: over several CPU devices, one that keeps
        Keras from reading logs in other threads (`_LogsReadInTheMainThread`)."""
        if self.replicas > 1 and any(d.platform == "cpu" for d in self.devices):
            return [_LogsReadInTheMainThread()]
        return []

    def process_batches(self, batches):
        """The part of each global batch this process feeds `fit` (all of it in one process:
        Keras splits it over the local devices)."""
        if not self.multi_worker:
            return batches
        return (_part(batch, self.process, self.processes) for batch in batches)

    def evaluation_batches(self, dataset):
        """The part of each evaluation batch (a `PyDataset`) this process feeds."""
        if not self.multi_worker:
            return dataset
        return _ProcessPart(dataset, self.process, self.processes)

    def device_report(self):
        """The backend, strategy, devices and hardware of the run, for results.json."""
        return {
            "backend": self.backend,
            "strategy": self.name,
            "distribution": type(self.distribution).__name__ if self.distribution else None,
            "replicas": self.replicas,
            "devices": [_name(d) for d in self.devices],
            "device_kinds": sorted({d.device_kind for d in self.devices}),
            "processes": self.processes,
            "visible_devices": [_name(d) for d in jax.devices()],
            "gpus": [d.device_kind for d in jax.devices() if d.platform == "gpu"],
            "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "host": platform.node(),
        }

    def versions(self):
        """JAX's libraries, for results.json."""
        return {"jax": jax.__version__, "jaxlib": installed_version("jaxlib")}

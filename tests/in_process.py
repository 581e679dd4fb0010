"""multiprocessing's spawn context for `keras_normloss.training.sweep`, running each run in the test's
own process: seconds, where a fresh process takes 5-10 s to start TensorFlow. The sweep's own
process handling is tested with real processes elsewhere (test_sweep_and_plots)."""


class InProcess:
    """Stands for `multiprocessing.get_context("spawn")`: `monkeypatch.setattr(
    sweep.multiprocessing, "get_context", lambda method: InProcess)`."""

    class Process:
        def __init__(self, target, args):
            self.target, self.args, self.pid, self.exitcode = target, args, None, None

        def start(self):
            try:
                self.target(*self.args)
                self.exitcode = 0
            except SystemExit as stop:
                self.exitcode = stop.code

        def join(self):
            pass

"""One way to keep third-party chatter off the user's console while specrewrite drives an exporter: Python
warnings, library loggers, Python-level prints and progress bars, and the C++ log lines that converters and
runtimes (LiteRT, ExecuTorch, XNNPACK, coremltools) write straight to the process's file descriptors 1 and 2.
Errors still propagate with their messages; what matters for the user goes into the report."""
from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import warnings

_LOGGERS = ("torch.onnx", "torch.export", "torch._export", "coremltools", "absl", "executorch", "litert_torch",
            "tensorflow", "jax")


@contextlib.contextmanager
def quiet():
    loggers = [logging.getLogger(n) for n in _LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    saved, devnull = [], None
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        devnull = os.open(os.devnull, os.O_WRONLY)
        saved = [(fd, os.dup(fd)) for fd in (1, 2)]
        for fd, _ in saved:
            os.dup2(devnull, fd)
    except (OSError, ValueError, AttributeError):   # no real file descriptors (an embedding host): Python level only
        for fd, copy in saved:
            os.dup2(copy, fd)
            os.close(copy)
        saved = []
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for fd, copy in saved:
            try:
                os.dup2(copy, fd)
            finally:
                os.close(copy)
        if devnull is not None:
            os.close(devnull)
        for lg, lvl in zip(loggers, levels):
            lg.setLevel(lvl)

"""Pickling a fitted estimator: its torch modules travel as ``torch.save`` bytes.

``torch.save`` keeps the tensors' bytes whatever device they sit on; on unpickling they are
mapped to a device that exists here (a CUDA-fitted model loads on a CPU-only machine).
"""

from __future__ import annotations

import io
import warnings

import torch

from ..fit.moved import MOVED
from .older_files import PARAMS, REJECTOR, describe_moved, moved_params

#: Fitted attributes holding torch modules.
MODULES = ("module_", "rejector_")


def module_state_to_bytes(state):
    """``state`` (an estimator's ``__dict__`` copy) with its modules as bytes."""
    if "module_" in state:
        for name in MODULES:
            if state.get(name) is not None:
                buf = io.BytesIO()
                torch.save(state.pop(name), buf)
                state[f"_{name}bytes"] = buf.getvalue()
        state["device_"] = str(state["device_"])
    return state


def restore_modules(est, state):
    """Set ``state`` on ``est``, its module bytes loaded back as modules on an available device."""
    blobs = {name: state.pop(f"_{name}bytes", None) for name in MODULES}
    est.__dict__.update(state)
    for name, value in PARAMS.items():  # parameters added after the pickle was written
        est.__dict__.setdefault(name, value)
    # parameters that moved into the strategy's options after the pickle was written
    names = ("strategy", "strategy_options", *MOVED)
    params, moved = moved_params({k: est.__dict__[k] for k in names if k in est.__dict__})
    est.__dict__.update(params)
    describe_moved(est.__dict__.get("strategy_"), moved)
    if blobs["module_"] is None:
        return
    device = torch.device(state["device_"])
    if device.type == "cuda" and not torch.cuda.is_available():
        warnings.warn("model was fitted on CUDA, which is not available here; loading it on the CPU", stacklevel=3)
        device = torch.device("cpu")
    for name, blob in blobs.items():
        if blob is not None:
            setattr(est, name, torch.load(io.BytesIO(blob), map_location=device, weights_only=False).eval())
    if "rejector_" not in est.__dict__:  # pickled before 0.6.0
        est.rejector_ = REJECTOR
    est.device_ = device

"""Where fit and predict run: device names, the Accelerate process group, CUDA memory advice."""

from __future__ import annotations

import contextlib

import torch


def resolve_device(device):
    """Turn ``"auto"``/``"cpu"``/``"cuda"``/``"cuda:N"``/``"mps"`` into a ``torch.device``."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={device!r} is not a valid torch device ('auto', 'cpu', 'cuda', 'cuda:0', ...)") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} was requested but CUDA is not available; use device='auto' or 'cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device={device!r}: only {torch.cuda.device_count()} CUDA device(s) present")
    elif dev.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise ValueError(f"device={device!r} was requested but MPS is not available")
    elif dev.type != "cpu":
        raise ValueError(f"device={device!r} is not supported; use 'auto', 'cpu', 'cuda' or 'mps'")
    return dev


PRECISIONS = ("auto", "float32", "bfloat16")


def cpu_has_native_bf16():
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX tiles), as torch reports it."""
    checks = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
    return any(check is not None and check() for check in checks)


def resolve_precision(precision, device, bf16_on_cpu=False):
    """The dtype a fit's training passes autocast to: ``torch.bfloat16``, or None (float32).

    ``"auto"`` is bf16 on CUDA; on a CPU with native bf16, bf16 where the strategy says it trains
    as well in bf16 (``bf16_on_cpu``); float32 otherwise. Master weights stay float32 either way.
    """
    if precision == "float32":
        return None
    if precision == "bfloat16":
        if device.type not in ("cpu", "cuda"):
            raise ValueError(f"precision='bfloat16' is supported on 'cpu' and 'cuda', not on {device.type!r}")
        return torch.bfloat16
    if device.type == "cuda" or (device.type == "cpu" and bf16_on_cpu and cpu_has_native_bf16()):
        return torch.bfloat16
    return None


def autocast(device, dtype):
    """Autocast to ``dtype`` on ``device`` for a whole stage (nothing when ``dtype`` is None).

    Without autocast's cache: it keeps one cast of each trainable weight until the outermost
    context ends, so the passes of a stage would never see the optimiser's updates.
    """
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype, cache_enabled=False)


def make_accelerator(device):
    """The Accelerate ``Accelerator`` of this process (``accelerate launch`` / ``torchrun`` set the processes)."""
    try:
        from accelerate import Accelerator
    except ImportError as exc:
        raise ImportError("accelerate=True needs the accelerate package: pip install 'sksparseft[accelerate]'") from exc
    return Accelerator(cpu=device.type == "cpu", mixed_precision="no")  # bf16 autocast is ours


def broadcast_from_main(obj):
    """Process 0's ``obj`` in every process (data-parallel fits must train the same entries)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@contextlib.contextmanager
def oom_advice(stage, batch_size, max_length):
    """Turn a CUDA out-of-memory error into one that says what to set."""
    try:
        yield
    except torch.cuda.OutOfMemoryError as exc:
        raise MemoryError(
            f"CUDA ran out of memory during {stage} with batch_size={batch_size}, "
            f"max_length={max_length}: set a smaller batch_size or max_length, or device='cpu'"
        ) from exc

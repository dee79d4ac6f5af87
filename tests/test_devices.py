"""Device names, out-of-memory advice, the Accelerate helpers (model/devices.py)."""

import sys

import pytest
import torch

from sksparseft.model.devices import broadcast_from_main, make_accelerator, oom_advice, resolve_device


@pytest.mark.parametrize("cuda", [False, True])
def test_auto_and_none_pick_cuda_only_when_it_is_there(monkeypatch, cuda):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    expected = torch.device("cuda" if cuda else "cpu")
    assert resolve_device("auto") == expected
    assert resolve_device(None) == expected


def test_cpu_by_name_or_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert isinstance(resolve_device("cpu"), torch.device)


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "", "cpu:zero"])
def test_a_name_torch_does_not_know_is_a_value_error_listing_the_choices(device):
    with pytest.raises(ValueError, match=r"not a valid torch device \('auto', 'cpu', 'cuda'") as info:
        resolve_device(device)
    assert repr(device) in str(info.value)


def test_a_device_type_sksparseft_does_not_run_on_is_refused():
    with pytest.raises(ValueError, match="'meta' is not supported; use 'auto', 'cpu', 'cuda' or 'mps'"):
        resolve_device("meta")


def test_cuda_without_cuda_says_so(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name in ("cuda", "cuda:0"):
        with pytest.raises(ValueError, match="CUDA is not available; use device='auto' or 'cpu'"):
            resolve_device(name)


def test_a_cuda_index_beyond_the_devices_present(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("cuda") == torch.device("cuda")
    with pytest.raises(ValueError, match=r"'cuda:2': only 2 CUDA device\(s\) present"):
        resolve_device("cuda:2")


def test_mps_without_mps_says_so(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ValueError, match="MPS is not available"):
        resolve_device("mps")


def test_oom_advice_names_stage_batch_size_and_max_length():
    oom = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    with pytest.raises(MemoryError) as info:
        with oom_advice("sensitivity scoring", 32, 128):
            raise oom
    message = str(info.value)
    assert "during sensitivity scoring" in message
    assert "batch_size=32" in message and "max_length=128" in message
    assert "smaller batch_size or max_length" in message
    assert info.value.__cause__ is oom


def test_oom_advice_lets_other_errors_and_results_through():
    with pytest.raises(RuntimeError, match="shape mismatch"):
        with oom_advice("training", 8, 64):
            raise RuntimeError("shape mismatch")
    with pytest.raises(MemoryError, match="^host$"):  # a MemoryError of the host: not re-worded
        with oom_advice("training", 8, 64):
            raise MemoryError("host")
    ran = []
    with oom_advice("training", 8, 64):  # nothing raised: the body runs once and nothing is raised after it
        ran.append("body")
    assert ran == ["body"]


def test_broadcast_from_main_is_the_object_itself_without_a_process_group():
    import torch.distributed as dist

    assert not dist.is_initialized()
    obj = {"seed": 3, "mask": [1, 2]}
    assert broadcast_from_main(obj) is obj


def test_broadcast_from_main_in_a_one_process_group(tmp_path):
    import torch.distributed as dist

    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        obj = [1.5, "x"]
        assert broadcast_from_main(obj) is obj  # nothing to send to
    finally:
        dist.destroy_process_group()


def test_make_accelerator_without_accelerate_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "accelerate", None)  # import accelerate -> ImportError
    with pytest.raises(ImportError, match=r"pip install 'sksparseft\[accelerate\]'"):
        make_accelerator(torch.device("cpu"))


def test_make_accelerator_on_the_cpu_runs_in_full_precision():
    pytest.importorskip("accelerate")
    accelerator = make_accelerator(torch.device("cpu"))
    assert accelerator.device == torch.device("cpu")
    assert accelerator.mixed_precision == "no"  # bf16 autocast is the module's own
    assert accelerator.num_processes == 1

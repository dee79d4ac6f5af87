import pytest
import torch

from sksparseft.model.backbone import default_pooling, load_backbone, pool, resolve_model_path
from sksparseft.model.devices import resolve_device


def test_packaged_default_resolves_to_files():
    path = resolve_model_path("all-MiniLM-L6-v2")
    assert path.endswith("model")
    assert default_pooling(path, None) == "mean"


def test_local_folder_and_errors(tiny_model, tmp_path):
    assert resolve_model_path(tiny_model) == tiny_model
    with pytest.raises(ValueError, match="neither a packaged model"):
        resolve_model_path(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="without a config.json"):
        resolve_model_path(str(tmp_path))
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match="is a file"):
        resolve_model_path(str(tmp_path / "weights.bin"))
    with pytest.raises(TypeError):
        resolve_model_path(3)


def test_loads_float32_encoder(tiny_model):
    tok, enc, path = load_backbone(tiny_model)
    assert next(enc.parameters()).dtype == torch.float32
    assert tok.pad_token is not None


def test_mean_pooling_ignores_padding():
    hidden = torch.tensor([[[1.0], [3.0], [100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert pool(hidden, mask, "mean").item() == 2.0
    assert pool(hidden, mask, "cls").item() == 1.0


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="device"):
        resolve_device("tpu-of-dreams")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_the_tensor_hash_takes_scalars_and_tells_them_from_vectors():
    import torch

    from sksparseft.model.backbone import tensors_sha256

    scalar = tensors_sha256({"t": torch.tensor(1.5)})
    assert scalar == tensors_sha256({"t": torch.tensor(1.5)})
    assert scalar != tensors_sha256({"t": torch.tensor([1.5])})  # the shape is hashed, not only the bytes
    assert scalar != tensors_sha256({"t": torch.tensor(2.5)})

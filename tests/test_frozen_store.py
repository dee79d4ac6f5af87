"""The store of frozen outputs per text (sksparseft/model/frozen_store.py): keys, namespaces, files, sharing."""

import threading
from pathlib import Path

import joblib
import numpy as np
import pytest
import torch

from sksparseft.model import frozen_store
from sksparseft.model.frozen_store import (FrozenStore, backbone_namespace, frozen_features, memory_folder,
                                           text_keys)


def test_memory_is_a_folder_a_joblib_memory_or_nothing(tmp_path):
    assert memory_folder(None) is None
    assert memory_folder(str(tmp_path)) == tmp_path and memory_folder(tmp_path) == tmp_path
    assert memory_folder(joblib.Memory(tmp_path, verbose=0)) == tmp_path
    assert memory_folder(joblib.Memory(None, verbose=0)) is None  # joblib's "cache nothing"
    with pytest.raises(ValueError, match="memory must be"):
        memory_folder(object())


def test_text_keys_are_the_ids_up_to_each_texts_length():
    ids = np.array([[5, 6, 7, 0], [5, 6, 0, 0], [5, 6, 7, 8]])
    mask = (ids > 0).astype(np.int64)
    keys = text_keys(ids, mask)
    assert keys[0] == np.array([5, 6, 7]).tobytes() and keys[1] == np.array([5, 6]).tobytes()
    assert len(set(keys)) == 3
    assert text_keys(np.pad(ids, ((0, 0), (0, 3))), np.pad(mask, ((0, 0), (0, 3)))) == keys  # padding is not the text


def test_a_stored_tensor_comes_back_and_is_never_overwritten(tmp_path):
    store = FrozenStore(tmp_path, "ns")
    a, b = np.array([1, 2]).tobytes(), np.array([3]).tobytes()
    store.put({a: torch.ones(2, 3), b: torch.zeros(1, 3)})
    got = store.get([a, b, np.array([9]).tobytes()])
    assert set(got) == {a, b} and torch.equal(got[a], torch.ones(2, 3)) and len(store) == 2
    store.put({a: torch.full((2, 3), 7.0)})  # an entry is the same wherever it was computed: the first stays
    assert torch.equal(store.get([a])[a], torch.ones(2, 3))
    assert not list(Path(tmp_path).rglob("*.tmp"))


def test_an_unreadable_or_foreign_entry_is_computed_again(tmp_path):
    store = FrozenStore(tmp_path, "ns")
    a, b = np.array([1, 2]).tobytes(), np.array([3]).tobytes()
    store.put({a: torch.ones(2)})
    store._path(a).write_bytes(b"truncated")  # a torn or damaged file
    path_b = store._path(b)
    path_b.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"key": torch.tensor([9], dtype=torch.uint8), "value": torch.ones(1)}, path_b)  # another text's
    assert store.get([a, b]) == {}
    assert not store._path(a).exists() and not path_b.exists()  # removed, so that they are stored anew
    store.put({a: torch.zeros(2), b: torch.zeros(1)})
    assert set(store.get([a, b])) == {a, b}


def test_namespaces_differ_by_weights_and_by_what_is_stored():
    torch.manual_seed(0)
    encoder = torch.nn.Linear(3, 2)
    first = backbone_namespace(encoder, "input of block 4")
    assert first == backbone_namespace(encoder, "input of block 4")
    assert first != backbone_namespace(encoder, "input of block 3")
    with torch.no_grad():
        encoder.weight[0, 0] += 1e-3
    assert first != backbone_namespace(encoder, "input of block 4")


def test_processes_and_threads_may_write_one_folder_at_once(tmp_path):
    keys = [np.array([i]).tobytes() for i in range(40)]
    values = {k: torch.full((4,), float(i)) for i, k in enumerate(keys)}
    errors = []

    def writer():
        try:
            FrozenStore(tmp_path, "shared").put(values)
        except Exception as exc:  # noqa: BLE001 - the test reports any
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = FrozenStore(tmp_path, "shared").get(keys)
    assert not errors and len(got) == 40 and all(torch.equal(got[k], values[k]) for k in keys)


class _Frozen(torch.nn.Module):
    """Features = the mean of the ids' embeddings; counts the texts it runs."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.emb = torch.nn.Embedding(50, 4)
        self.head = torch.nn.Linear(4, 2)
        self.seen = 0

    def features(self, input_ids, attention_mask):
        self.seen += len(input_ids)
        m = attention_mask.unsqueeze(-1).float()
        return (self.emb(input_ids) * m).sum(1) / m.sum(1)


def test_frozen_features_run_only_the_texts_the_store_lacks(tmp_path):
    module = _Frozen()
    ids = np.array([[1, 2, 3], [4, 5, 0], [6, 0, 0], [1, 2, 3]])
    enc = {"input_ids": ids, "attention_mask": (ids > 0).astype(np.int64)}
    plain = frozen_features(module, enc, 8, "cpu")
    store = FrozenStore(tmp_path, "features")
    module.seen = 0
    first = frozen_features(module, enc, 8, "cpu", store=store)
    assert module.seen == 4 and len(store) == 3  # the repeated text is one entry
    module.seen = 0
    part = {k: v[1:3] for k, v in enc.items()}
    again = frozen_features(module, part, 8, "cpu", store=store)
    assert module.seen == 0  # all from the store
    np.testing.assert_allclose(first, plain, atol=1e-6)
    np.testing.assert_array_equal(again, first[1:3])


def test_the_store_lives_in_its_own_folder_of_memory(tmp_path):
    FrozenStore(tmp_path, "ns").put({b"\x01": torch.ones(1)})
    assert [p.name for p in tmp_path.iterdir()] == [frozen_store.FOLDER]

"""What the frozen backbone computes for a text, kept across fits in a folder (the estimator's ``memory``).

A fit that trains only the top blocks runs the blocks below them once per text (the block
cache); a fit's linear probe reads the frozen backbone's pooled features. Both depend on the
text and the frozen weights alone, so the folds and candidates of a search can share them.
Entries are keyed by everything that changes them: the backbone's weights (a fingerprint of
every tensor: another model or an adapted vocabulary is another namespace), what is stored
(the input of block ``k``, or features pooled one way), the device type and the text's token
ids (so the tokenizer and ``max_length`` are part of the key). One file per text, written atomically:
processes may share a folder (two writing one entry write the same values; the last rename
wins), and a reader never sees half a file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from .backbone import backbone_fingerprint
from .inference import run_inference


#: The store's folder inside ``memory``.
FOLDER = "sksparseft-frozen"


def memory_folder(memory):
    """The folder of ``memory`` (a path, a ``joblib.Memory`` or None, as ``Pipeline(memory=...)``); None: no store."""
    if memory is None:
        return None
    if isinstance(memory, (str, os.PathLike)):
        return Path(memory)
    location = getattr(memory, "location", None)
    if location is None and hasattr(memory, "cache"):
        return None  # joblib.Memory(location=None) caches nothing
    if location is None:
        raise ValueError(f"memory must be None, a folder or a joblib.Memory, got {memory!r}")
    return Path(location)


def text_keys(input_ids, attention_mask):
    """One key per row of encoded texts: its token ids up to its length (the block cache's keys)."""
    ids = np.asarray(input_ids)
    lengths = np.asarray(attention_mask).sum(axis=1)
    return [ids[r, :n].tobytes() for r, n in enumerate(lengths.tolist())]


def backbone_namespace(encoder, what):
    """A namespace for what this backbone's weights compute, qualified by ``what`` (e.g. the device type)."""
    h = hashlib.sha256(f"{type(encoder).__name__}|{what}|".encode())
    h.update(backbone_fingerprint(encoder).encode())
    return h.hexdigest()[:32]


class FrozenStore:
    """Tensors per text under ``folder/sksparseft-frozen/namespace``, one file each."""

    def __init__(self, folder, namespace):
        self.root = Path(folder) / FOLDER / namespace

    def _path(self, key):
        h = hashlib.sha256(key).hexdigest()
        return self.root / h[:2] / f"{h}.pt"

    def get(self, keys, device=None):
        """``{key: tensor}`` of the keys stored; a damaged or foreign entry is removed (computed and stored again)."""
        out = {}
        for key in keys:
            path = self._path(key)
            try:
                entry = torch.load(path, map_location="cpu", weights_only=True)
                ok = (isinstance(entry, dict) and torch.is_tensor(entry.get("key")) and torch.is_tensor(entry.get("value"))
                      and entry["key"].numpy().tobytes() == key)
            except FileNotFoundError:
                continue  # not there yet: computed, then stored
            except Exception:  # noqa: BLE001 - a damaged file fails in many ways inside torch's unpickler
                ok = False
            if not ok:
                path.unlink(missing_ok=True)
                continue
            out[key] = entry["value"] if device is None else entry["value"].to(device)
        return out

    def put(self, items):
        """Store ``{key: tensor}``; entries already there are kept as they are."""
        for key, value in items.items():
            path = self._path(key)
            if path.exists():
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            entry = {"key": torch.from_numpy(np.frombuffer(key, dtype=np.uint8).copy()),
                     "value": value.detach().to("cpu").clone()}
            # Renamed into place whole; not flushed to disk first: an entry lost in a crash is computed again.
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            os.close(fd)
            try:
                torch.save(entry, tmp)
                os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)

    def __len__(self):
        return sum(1 for _ in self.root.glob("*/*.pt")) if self.root.exists() else 0


def frozen_features(module, encodings, batch_size, device, store=None, progress=None):
    """``module``'s pooled features of ``encodings`` (a frozen backbone's): from ``store`` where it has them."""
    if store is None:
        return run_inference(module, encodings, batch_size, device, what="features", progress=progress)
    keys = text_keys(encodings["input_ids"], encodings["attention_mask"])
    found = store.get(keys)
    missing = [i for i, key in enumerate(keys) if key not in found]
    features = np.empty((len(keys), module.head.in_features), dtype=np.float32)
    if missing:
        computed = run_inference(module, {k: v[missing] for k, v in encodings.items()}, batch_size, device,
                                 what="features", progress=progress)
        features[missing] = computed
        store.put({keys[i]: torch.from_numpy(computed[j]) for j, i in enumerate(missing)})
    for i, key in enumerate(keys):
        if key in found:
            features[i] = found[key].numpy()
    return features


def fill_block_cache(module, store, encodings, device):
    """Give ``module``'s block cache the rows ``store`` holds for ``encodings``; the keys it gave."""
    found = store.get(text_keys(encodings["input_ids"], encodings["attention_mask"]), device=device)
    module.__dict__["_block_cache"]["rows"].update(found)
    return set(found)


def keep_block_cache(module, store, loaded):
    """Put the rows ``module``'s block cache computed (those not ``loaded`` from ``store``) into ``store``."""
    rows = module.__dict__.get("_block_cache", {}).get("rows", {})
    store.put({key: row for key, row in rows.items() if key not in loaded})

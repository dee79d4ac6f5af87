"""Exports that run without sksparseft: a Hugging Face folder, and ONNX.

The Hugging Face folder is a plain backbone (``AutoModel``) with the fitted delta or
adapters folded into its weights, its tokenizer, ``id2label`` in its config, and the
classification head in ``head.safetensors``; the pooling is recorded in the config and
the README written into the folder shows the few lines that load and apply it.
"""

from __future__ import annotations

import ast
import inspect
import json
from pathlib import Path

import torch

from ..atomic import atomic_dir, atomic_write

LOADING_CODE = '''\
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer

folder = "{folder}"
tokenizer = AutoTokenizer.from_pretrained(folder)
model = AutoModel.from_pretrained(folder).eval()
head = load_file(f"{{folder}}/head.safetensors")
settings = model.config.sksparseft
pooling = settings["pooling"]  # "{pooling}"
labels = model.config.id2label


{pooling_code}


def predict_proba(texts, model=model, head=head):
    enc = tokenizer(texts, padding=True, truncation=True, max_length={max_length}, return_tensors="pt")
    with torch.inference_mode():
        feats = pool_output(model(**enc), enc["attention_mask"], pooling)
        logits = feats @ head["weight"].T + head["bias"]
        return {activation}

{predict}'''

# What ``predict`` does with the probabilities, per kind of model.
PREDICT_CODE = {
    "single": '''
def predict(texts):
    return [labels[int(i)] for i in predict_proba(texts).argmax(-1)]
''',
    "unknown": '''
def predict(texts):
    # Below settings["unknown_threshold"] (or on the unknown class itself): settings["unknown_label"].
    best, index = predict_proba(texts).max(-1)
    unknown = str(settings["unknown_label"])
    return [unknown if p < settings["unknown_threshold"] or labels[int(i)] == unknown else labels[int(i)]
            for p, i in zip(best.tolist(), index.tolist())]
''',
    "unknown_frozen": '''
rejector = AutoModel.from_pretrained(f"{{folder}}/rejector").eval()  # the backbone as pretrained
rejector_head = load_file(f"{{folder}}/rejector/head.safetensors")  # its linear probe


def predict(texts):
    # The class from the model; settings["unknown_label"] where the pretrained backbone's probe is less
    # sure than settings["unknown_threshold"] (or where the class is the unknown label itself).
    index = predict_proba(texts).argmax(-1)
    unknown = str(settings["unknown_label"])
    known = [j for j, name in labels.items() if name != unknown]  # the unknown class's own column left out
    best = predict_proba(texts, rejector, rejector_head)[:, known].max(-1).values
    return [unknown if p < settings["unknown_threshold"] or labels[int(i)] == unknown else labels[int(i)]
            for p, i in zip(best.tolist(), index.tolist())]
''',
    "multilabel": '''
def predict(texts):
    # Every label at or above its own threshold.
    keep = predict_proba(texts) >= torch.tensor(settings["thresholds"], dtype=torch.float32)
    return [[labels[j] for j in row.nonzero().flatten().tolist()] for row in keep]
''',
}


def prediction_settings(est):
    """What turns probabilities into predictions: activation, thresholds, the unknown label."""
    unknown = est.unknown_label if getattr(est, "unknown_threshold_", None) is not None else None
    return {
        "multilabel": bool(est.multilabel_),
        "thresholds": None if est.thresholds_ is None else [float(t) for t in est.thresholds_],
        "unknown_label": unknown.item() if hasattr(unknown, "item") else unknown,
        "unknown_threshold": None if unknown is None else float(est.unknown_threshold_),
        # What the threshold applies to: the pretrained backbone's linear probe (files of 0.6.0 on), or the model.
        "rejection_score": None if unknown is None else ("frozen_probe" if _rejector(est) is not None else "model"),
    }


def _rejector(est):
    return getattr(est, "rejector_", None)


def label_texts(est):
    """The labels as text, in column order (multi-label: the names of ``y``'s columns when known)."""
    names = est.label_names_ if est.multilabel_ and est.label_names_ else [str(c) for c in est.classes_]
    if len(set(names)) != len(names):
        raise ValueError("class labels are not distinct as text; id2label needs distinct names")
    return names


def _loading_code(est, folder):
    settings = prediction_settings(est)
    kind = "multilabel" if settings["multilabel"] else "unknown" if settings["unknown_label"] is not None else "single"
    if kind == "unknown" and settings["rejection_score"] == "frozen_probe":
        kind = "unknown_frozen"
    return LOADING_CODE.format(
        folder=folder, pooling=est.pooling_, max_length=int(est.max_length), pooling_code=_pooling_code(),
        activation="torch.sigmoid(logits)" if settings["multilabel"] else "torch.softmax(logits, dim=-1)",
        predict=PREDICT_CODE[kind].lstrip("\n").format(folder=folder),
    )


def _pooling_code():
    """The package's own pooling functions, docstrings left out: the folder pools as fit did."""
    from ..model.backbone import pool, pool_output

    code = []
    for func in (pool_output, pool):
        lines = inspect.getsource(func).splitlines()
        doc = ast.parse("\n".join(lines)).body[0].body[0]  # the docstring statement
        code.append("\n".join(lines[:doc.lineno - 1] + lines[doc.end_lineno:]))
    return "\n\n\n".join(code)


def plain_backbone_state(est):
    """The fitted backbone's state as a stock transformers model holds it (the strategy folds its own parts)."""
    from ..strategies import from_description

    return from_description(est.strategy_).plain_backbone_state(est.module_.encoder)


def to_huggingface(est, path, overwrite=False):
    """Write ``est`` as a Hugging Face folder at ``path`` (written beside it, then renamed in)."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    state = plain_backbone_state(est)
    module = est.module_
    config = module.encoder.config
    clean = _plain_model(config, state)
    labels = label_texts(est)
    settings = prediction_settings(est)
    clean.config.id2label = dict(enumerate(labels))
    clean.config.label2id = {c: i for i, c in enumerate(labels)}
    clean.config.problem_type = "multi_label_classification" if est.multilabel_ else "single_label_classification"
    clean.config.sksparseft = {"pooling": est.pooling_, "max_length": int(est.max_length),
                               "strategy": est.strategy_["strategy"], **settings}

    def write(tmp):
        clean.save_pretrained(tmp)
        est.tokenizer_.save_pretrained(tmp)
        save_file({"weight": module.head.weight.detach().cpu().contiguous(),
                   "bias": module.head.bias.detach().cpu().contiguous()}, str(tmp / "head.safetensors"))
        rejector = _rejector(est)
        if rejector is not None:  # the pretrained backbone and its probe, which decide rejection
            _plain_model(rejector.encoder.config, rejector.encoder.state_dict()).save_pretrained(tmp / "rejector")
            save_file({"weight": rejector.head.weight.detach().cpu().contiguous(),
                       "bias": rejector.head.bias.detach().cpu().contiguous()}, str(tmp / "rejector" / "head.safetensors"))
        code = _loading_code(est, path.name)
        (tmp / "README.md").write_text(
            "# Text classifier exported by sksparseft\n\n"
            f"Backbone `{config.model_type}`, {len(labels)} classes, pooling `{est.pooling_}`, strategy "
            f"`{est.strategy_['strategy']}`. Loads with transformers alone:\n\n```python\n{code}```\n"
        )
        (tmp / "sksparseft.json").write_text(json.dumps({"classes": labels, "pooling": est.pooling_, **settings},
                                                        indent=2))

    return atomic_dir(path, write, replace=True)


def _plain_model(config, state, attn_implementation=None):
    """A stock transformers model of ``config`` holding ``state`` (float32); every tensor must fit."""
    from transformers import AutoModel

    extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
    clean = AutoModel.from_config(config, dtype=torch.float32, **extra)
    missing, unexpected = clean.load_state_dict({k: v.detach().cpu().float() for k, v in state.items()}, strict=False)
    missing = [m for m in missing if not m.endswith("position_ids")]
    if missing or unexpected:
        raise RuntimeError(f"could not rebuild a plain backbone (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return clean.eval()


class _ProbabilityModel(torch.nn.Module):
    """Backbone -> pooling -> head -> softmax (multi-label: sigmoid), as one graph for export.

    With a rejector (frozen backbone and its probe), a second output: the probe's best
    known-class probability, which ``predict`` compares with the unknown threshold.
    """

    def __init__(self, encoder, head, pooling, multilabel=False, rejector=None, known=None):
        super().__init__()
        self.encoder, self.head, self.pooling, self.multilabel = encoder, head, pooling, multilabel
        self.rejector = rejector
        self.known = known  # columns of the known classes (the unknown label's own class left out)

    def forward(self, input_ids, attention_mask):
        from ..model.backbone import pool_output

        output = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        logits = self.head(pool_output(output, attention_mask, self.pooling)).float()
        proba = torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, dim=-1)
        if self.rejector is None:
            return proba
        encoder, head = self.rejector
        frozen = encoder(input_ids=input_ids, attention_mask=attention_mask)
        frozen_proba = torch.softmax(head(pool_output(frozen, attention_mask, self.pooling)).float(), dim=-1)
        return proba, frozen_proba[:, self.known].max(dim=-1).values


def to_onnx(est, path, opset=18):
    """Write an ONNX graph (inputs ``input_ids``, ``attention_mask``; output ``probabilities``).

    A model that rejects unknown texts (``unknown_label``) has a second output,
    ``rejection_score`` (the pretrained backbone's probe's best known-class probability): a text
    whose score is below the metadata's ``unknown_threshold`` is rejected.

    Batch size and sequence length are dynamic. Tokenise with ``est.tokenizer_``
    (or the tokenizer files of :func:`to_huggingface`), right padding. The model's
    metadata property ``sksparseft`` (JSON) holds the labels and what turns probabilities
    into predictions (multi-label thresholds, the unknown label and its threshold).
    """

    import importlib.util

    if importlib.util.find_spec("onnx") is None or importlib.util.find_spec("onnxscript") is None:
        raise ImportError("ONNX export needs onnx and onnxscript: pip install 'sksparseft[onnx]'")
    state = plain_backbone_state(est)
    config = est.module_.encoder.config
    clean = _plain_model(config, state, "eager")
    head = torch.nn.Linear(est.module_.head.in_features, est.module_.head.out_features)
    head.load_state_dict({k: v.detach().cpu() for k, v in est.module_.head.state_dict().items()})
    rejector = _rejector(est)
    if rejector is not None:
        rejector_head = torch.nn.Linear(rejector.head.in_features, rejector.head.out_features)
        rejector_head.load_state_dict({k: v.detach().cpu() for k, v in rejector.head.state_dict().items()})
        rejector = torch.nn.ModuleList([_plain_model(rejector.encoder.config, rejector.encoder.state_dict(), "eager"), rejector_head])
    known = [j for j, c in enumerate(est.classes_.tolist()) if c != est.unknown_label]
    model = _ProbabilityModel(clean.eval(), head, est.pooling_, multilabel=bool(est.multilabel_),
                              rejector=rejector, known=known).eval()
    enc = est.tokenizer_(["an example text", "a second, longer example text for tracing"], padding=True, return_tensors="pt")
    args = (enc["input_ids"], enc["attention_mask"])
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    program = torch.onnx.export(
        model, args, input_names=["input_ids", "attention_mask"],
        output_names=["probabilities"] + (["rejection_score"] if rejector is not None else []),
        dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}},
        opset_version=opset, dynamo=True, external_data=False,
    )
    meta = json.dumps({"classes": label_texts(est), "pooling": est.pooling_, "max_length": int(est.max_length),
                       **prediction_settings(est)})

    return save_onnx(program, path, meta)


def save_onnx(program, path, meta):
    """Write an exported ONNX program to ``path`` atomically, ``meta`` (JSON) as its ``sksparseft`` property."""
    def write(tmp):
        import onnx

        program.save(tmp)
        graph = onnx.load(str(tmp))
        onnx.helper.set_model_props(graph, {"sksparseft": meta})
        onnx.save(graph, str(tmp))

    return atomic_write(path, write)

"""A tagger's exports that run without sksparseft: a token-classification folder, and ONNX.

The folder loads with ``AutoModelForTokenClassification`` alone: the fitted backbone (delta or
adapters folded in by the strategy, as for the classifier), the token head as the model's own
classifier layer, ``id2label`` the tags. In the joint mode the intent head (over the mean of the
last token states) rides along in ``intent_head.safetensors``, its labels in the config.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..atomic import atomic_dir
from ..io.export import plain_backbone_state, save_onnx

LOADING_CODE = '''\\
import numpy as np
import torch
from transformers import AutoModelForTokenClassification, AutoTokenizer

folder = "{folder}"
tokenizer = AutoTokenizer.from_pretrained(folder)
model = AutoModelForTokenClassification.from_pretrained(folder).eval()
tags_ = [model.config.id2label[i] for i in range(len(model.config.id2label))]
settings = model.config.sksparseft  # decoding: "{decoding}", tag scheme: "{scheme}"


{decoding_code}


def predict(word_lists):
    \"\"\"``(tags, outputs)``: the tags of every word, read at its first piece as the tagger reads them
    (a word cut by max_length gets "O"), and the model's outputs.\"\"\"
    enc = tokenizer(word_lists, is_split_into_words=True, truncation=True, max_length={max_length},
                    padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(**enc, output_hidden_states=True)
    proba = torch.softmax(out.logits.double(), dim=-1).numpy()
    allowed = allowed_transitions(tags_)
    tags = []
    for i, words in enumerate(word_lists):
        rows = np.zeros((len(words), len(tags_)))
        rows[:, tags_.index("O") if "O" in tags_ else 0] = 1.0
        seen = set()
        for pos, w in enumerate(enc.word_ids(i)):
            if w is not None and w not in seen:
                seen.add(w)
                rows[w] = proba[i, pos]
        if settings["decoding"] == "constrained" and settings["tag_scheme"] == "iob2" and allowed[-1].any():
            tags.append([tags_[j] for j in viterbi(np.log(np.maximum(rows, 1e-300)), allowed)])
        else:
            tags.append([tags_[j] for j in rows.argmax(axis=1)])
    return tags, out
'''

INTENT_CODE = '''
from safetensors.torch import load_file

intent_head = load_file(f"{{folder}}/intent_head.safetensors")
intents = model.config.sksparseft["intents"]


def predict_intent(word_lists):
    """The intent of each text: the intent head over the mean of the last token states."""
    tags, out = predict(word_lists)
    enc = tokenizer(word_lists, is_split_into_words=True, truncation=True, max_length={max_length},
                    padding=True, return_tensors="pt")
    mask = enc["attention_mask"].unsqueeze(-1).float()
    states = (out.hidden_states[-1] * mask).sum(1) / mask.sum(1).clamp(min=1.0)
    logits = states @ intent_head["weight"].T + intent_head["bias"]
    return [intents[int(j)] for j in logits.argmax(-1)], tags
'''


def _decoding_code():
    """The package's own constrained decoding, docstrings left out: the folder decodes as predict does."""
    import ast
    import inspect

    from .decoding import allowed_transitions, viterbi

    code = []
    for func in (allowed_transitions, viterbi):
        lines = inspect.getsource(func).splitlines()
        doc = ast.parse("\n".join(lines)).body[0].body[0]
        code.append("\n".join(lines[:doc.lineno - 1] + lines[doc.end_lineno:]))
    return "\n\n\n".join(code)


def _token_model(est):
    """A stock ``AutoModelForTokenClassification`` holding the fitted backbone and the token head."""
    from transformers import AutoModelForTokenClassification

    module = est.module_
    config = module.encoder.config.__class__.from_dict(module.encoder.config.to_dict())
    tags = [str(t) for t in est.tags_]
    config.id2label, config.label2id = dict(enumerate(tags)), {t: i for i, t in enumerate(tags)}
    config.num_labels = len(tags)
    model = AutoModelForTokenClassification.from_config(config, dtype=torch.float32, attn_implementation="eager")
    base = model.base_model
    state = plain_backbone_state(est)
    wanted = base.state_dict()
    missing = [k for k in wanted if k not in state and not k.endswith("position_ids")]
    if missing:
        raise RuntimeError(f"the token-classification model of {config.model_type} needs {missing[:3]}, "
                           "which the fitted backbone lacks")
    base.load_state_dict({k: v.detach().cpu().float() for k, v in state.items() if k in wanted}, strict=False)
    head = [m for name, m in model.named_children()
            if isinstance(m, torch.nn.Linear) and m.out_features == len(tags) and m is not base]
    if len(head) != 1:
        raise RuntimeError(f"no single token classification layer found in {type(model).__name__}")
    with torch.no_grad():
        head[0].weight.copy_(module.head.weight.detach().cpu().float())
        head[0].bias.copy_(module.head.bias.detach().cpu().float())
    config.sksparseft = {"tag_scheme": est.tag_scheme_, "max_length": int(est.max_length), "decoding": est.decoding,
                         "strategy": est.strategy_["strategy"],
                         "intents": None if est.intents_ is None else [str(c) for c in est.intents_]}
    return model.eval()


def to_huggingface(est, path, overwrite=False):
    """Write ``est`` as a token-classification folder at ``path`` (written beside it, then renamed in)."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    model = _token_model(est)
    intent_head = est.module_.intent_head

    def write(tmp):
        model.save_pretrained(tmp)
        est.tokenizer_.save_pretrained(tmp)
        code = LOADING_CODE.format(folder=path.name, max_length=int(est.max_length), decoding=est.decoding,
                                   scheme=est.tag_scheme_, decoding_code=_decoding_code())
        if intent_head is not None:
            save_file({"weight": intent_head.weight.detach().cpu().contiguous(),
                       "bias": intent_head.bias.detach().cpu().contiguous()}, str(tmp / "intent_head.safetensors"))
            code += INTENT_CODE.format(folder=path.name, max_length=int(est.max_length))
        (tmp / "README.md").write_text(
            "# Slot tagger exported by sksparseft\n\n"
            f"Backbone `{model.config.model_type}`, {len(est.tags_)} tags ({est.tag_scheme_})"
            + ("" if intent_head is None else f", {len(est.intents_)} intents") +
            f", strategy `{est.strategy_['strategy']}`. Loads with transformers alone:\n\n```python\n{code}```\n")

    return atomic_dir(path, write, replace=True)


class _TagProbabilities(torch.nn.Module):
    """Backbone -> token head -> softmax per piece (and the intent head's softmax), as one graph."""

    def __init__(self, model, intent_head):
        super().__init__()
        self.model, self.intent_head = model, intent_head

    def forward(self, input_ids, attention_mask):
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        tags = torch.softmax(out.logits.float(), dim=-1)
        if self.intent_head is None:
            return tags
        mask = attention_mask.unsqueeze(-1).float()
        states = (out.hidden_states[-1] * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return tags, torch.softmax(self.intent_head(states).float(), dim=-1)


def to_onnx(est, path, opset=18):
    """ONNX: ``input_ids``, ``attention_mask`` -> ``tag_probabilities`` (batch, pieces, tags), and in the joint
    mode ``intent_probabilities``. Each word's tags are read at its first piece; the metadata property
    ``sksparseft`` (JSON) holds the tags, the intents and ``max_length``.
    """
    import importlib.util

    if importlib.util.find_spec("onnx") is None or importlib.util.find_spec("onnxscript") is None:
        raise ImportError("ONNX export needs onnx and onnxscript: pip install 'sksparseft[onnx]'")
    intent = None
    if est.module_.intent_head is not None:
        intent = torch.nn.Linear(est.module_.intent_head.in_features, est.module_.intent_head.out_features)
        intent.load_state_dict({k: v.detach().cpu() for k, v in est.module_.intent_head.state_dict().items()})
    model = _TagProbabilities(_token_model(est), intent).eval()
    enc = est.tokenizer_(["an example text", "a second, longer example text for tracing"], padding=True,
                         return_tensors="pt")
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    program = torch.onnx.export(
        model, (enc["input_ids"], enc["attention_mask"]), input_names=["input_ids", "attention_mask"],
        output_names=["tag_probabilities"] + (["intent_probabilities"] if intent is not None else []),
        dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}},
        opset_version=opset, dynamo=True, external_data=False)
    meta = json.dumps({"tags": [str(t) for t in est.tags_], "tag_scheme": est.tag_scheme_, "decoding": est.decoding,
                       "intents": None if est.intents_ is None else [str(c) for c in est.intents_],
                       "max_length": int(est.max_length)})

    return save_onnx(program, path, meta)

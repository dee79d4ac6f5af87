"""One peer's fit and predictions, run by its own environment's Python (``benchmarks.peers``).

Imports only the standard library, numpy and the peer's package: the peer's environment has no
sksparseft. Speaks JSON lines on stdin/stdout: ``{"fit": {...}}`` then any number of
``{"predict_proba": [texts]}``; every answer is one line (``{"error": ...}`` on failure).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from importlib.metadata import version

import numpy as np


def fit_setfit(X, y, model_path, seed):
    """SetFit's documented recipe: its trainer's defaults (20 pair iterations, one epoch, batch 16), LR head."""
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    model = SetFitModel.from_pretrained(model_path, local_files_only=True)
    data = Dataset.from_dict({"text": list(X), "label": list(y)})
    with tempfile.TemporaryDirectory() as tmp:  # its checkpoints never land in the working tree
        args = TrainingArguments(output_dir=tmp, save_strategy="no", batch_size=16, num_epochs=1,
                                 num_iterations=20, seed=seed, report_to="none")
        Trainer(model=model, args=args, train_dataset=data).train()
    classes = [str(c) for c in model.model_head.classes_]
    body = sum(p.numel() for p in model.model_body.parameters())
    trainable = int(body + model.model_head.coef_.size + model.model_head.intercept_.size)

    def predict_proba(texts):
        return np.asarray(model.predict_proba(list(texts), as_numpy=True))

    return predict_proba, classes, trainable, {"setfit": version("setfit")}


class _Accuracy:
    """What ``datasets.load_metric("accuracy")`` computes, without its download (no network here)."""

    def compute(self, predictions, references):
        return {"accuracy": float(np.mean(np.asarray(predictions) == np.asarray(references)))}


def fit_fastfit(X, y, model_path, seed):
    """FastFit's documented recipe (its README): 40 epochs, batch 32, 4 repeats, adafactor, clf loss 0.1.

    fp16 is off: it needs a GPU. The recipe's validation split is left out (no labelled text beyond
    the training set is given to any method); FastFit then trains its epochs without evaluating.
    """
    import torch
    from datasets import Dataset, DatasetDict
    import fastfit.train as ff_train
    from fastfit import FastFitTrainer

    ff_train.load_metric = lambda *a, **k: _Accuracy()
    train = Dataset.from_dict({"text": list(X), "label": list(y)})
    # Its custom-data path wants a test split; it is never read here (no trainer.test()).
    data = DatasetDict({"train": train, "test": train})
    with tempfile.TemporaryDirectory() as tmp:
        trainer = FastFitTrainer(
            model_name_or_path=model_path, label_column_name="label", text_column_name="text",
            num_train_epochs=40, per_device_train_batch_size=32, per_device_eval_batch_size=64,
            max_text_length=128, dataloader_drop_last=False, num_repeats=4, optim="adafactor",
            clf_loss_factor=0.1, fp16=False, dataset=data, output_dir=tmp, save_strategy="no",
            overwrite_output_dir=True, report_to="none", seed=seed)
        trainer.train()
        model = trainer.export_model()
    model.eval()
    tokenizer = trainer.tokenizer
    classes = [str(c) for c in trainer.labels]  # the logits' columns: its label ids follow this sorted list
    trainable = int(sum(p.numel() for p in trainer.model.parameters() if p.requires_grad))

    def predict_proba(texts):
        out = []
        with torch.no_grad():
            for i in range(0, len(texts), 64):
                # FastFit renames the tokenizer's model inputs for training: ask for the mask by name
                enc = tokenizer(list(texts[i:i + 64]), padding=True, truncation=True, max_length=128,
                                return_attention_mask=True, return_tensors="pt")
                logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
                out.append(torch.softmax(logits.float(), dim=-1).numpy())
        return np.concatenate(out)

    return predict_proba, classes, trainable, {"fast-fit": version("fast-fit")}


PEERS = {"setfit": fit_setfit, "fastfit": fit_fastfit}


def main():
    out = sys.stdout
    sys.stdout = sys.stderr  # the peers' prints must not break the protocol
    predict_proba = None
    for line in sys.stdin:
        request = json.loads(line)
        try:
            if "fit" in request:
                spec = request["fit"]
                t0 = time.perf_counter()
                predict_proba, classes, trainable, versions = PEERS[spec["peer"]](
                    spec["X"], [str(v) for v in spec["y"]], spec["model_path"], int(spec["seed"]))
                answer = {"fit_s": time.perf_counter() - t0, "classes": classes, "trainable_params": trainable,
                          "versions": {**versions, "torch": version("torch"), "transformers": version("transformers")}}
            else:
                answer = {"proba": predict_proba(request["predict_proba"]).tolist()}
        except Exception as exc:  # noqa: BLE001 - the parent reports it with the peer's name
            import traceback

            answer = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        out.write(json.dumps(answer) + "\n")
        out.flush()


if __name__ == "__main__":
    main()

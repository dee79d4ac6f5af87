"""Exports: a Hugging Face folder that predicts without sksparseft, and ONNX."""

import json

import numpy as np
import pytest
from safetensors.torch import load_file

from cases import EXPORTABLE, NEEDS_ONNX, NOT_EXPORTABLE, run_onnx
from cases import FAST as BASE
from sksparseft import TokenSparseClassifier


FAST = dict(BASE, random_state=0, validation_fraction=0.0, learning_rate=1e-2)


def _exported_proba(folder, texts):
    # The loading code the export's README shows, run as a user would.
    readme = (folder / "README.md").read_text()
    code = readme.split("```python\n")[1].split("```")[0].replace(f'folder = "{folder.name}"', f'folder = "{folder}"')
    scope = {}
    exec(compile(code, "exported_readme", "exec"), scope)
    return scope["predict_proba"](texts).numpy()


@pytest.mark.parametrize("strategy,options", EXPORTABLE, ids=[name for name, _ in EXPORTABLE])
def test_huggingface_folder_predicts_like_the_estimator(tiny_model, toy_data, tmp_path, strategy, options):
    X, y = toy_data
    clf = TokenSparseClassifier(tiny_model, strategy=strategy, strategy_options=options, **FAST).fit(X, y)
    folder = clf.to_huggingface(tmp_path / "exported")
    config = json.loads((folder / "config.json").read_text())
    assert [config["id2label"][str(i)] for i in range(len(clf.classes_))] == [str(c) for c in clf.classes_]
    assert not any("lora" in k for k in load_file(folder / "model.safetensors"))  # adapters folded in
    np.testing.assert_allclose(_exported_proba(folder, X[:10]), clf.predict_proba(X[:10]), atol=1e-5)
    with pytest.raises(FileExistsError):
        clf.to_huggingface(folder)


def test_huggingface_export_of_a_decoder(tiny_decoder, toy_data, tmp_path):
    X, y = toy_data
    clf = TokenSparseClassifier(tiny_decoder, **FAST).fit(X, y)
    folder = clf.to_huggingface(tmp_path / "dec")
    np.testing.assert_allclose(_exported_proba(folder, X[:10]), clf.predict_proba(X[:10]), atol=1e-5)


@pytest.mark.parametrize("strategy,options", NOT_EXPORTABLE, ids=[name for name, _ in NOT_EXPORTABLE])
def test_strategies_without_a_plain_backbone_refuse_export(tiny_model, toy_data, tmp_path, strategy, options):
    X, y = toy_data
    clf = TokenSparseClassifier(tiny_model, strategy=strategy, strategy_options=options, **dict(FAST, max_epochs=1)).fit(X, y)
    with pytest.raises(ValueError, match=strategy):
        clf.to_huggingface(tmp_path / "p")
    with pytest.raises(ValueError, match=strategy):
        clf.to_onnx(tmp_path / "p.onnx")
    assert not (tmp_path / "p").exists() and not (tmp_path / "p.onnx").exists()


@NEEDS_ONNX
def test_onnx_probabilities_match_predict_proba(tiny_model, toy_data, tmp_path):
    X, y = toy_data
    clf = TokenSparseClassifier(tiny_model, **FAST).fit(X, y)
    path = clf.to_onnx(tmp_path / "m.onnx")
    texts = X[:7] + ["a longer text than the others so that the batch is padded somewhat"]
    _, (proba,) = run_onnx(path, clf, texts)
    np.testing.assert_allclose(proba, clf.predict_proba(texts), atol=1e-4)


@pytest.mark.parametrize("pooling", ["mean", "cls", "pooler"])
def test_every_pooling_of_an_encoder_exports_as_it_predicts(tiny_model, toy_data, tmp_path, pooling):
    X, y = toy_data
    clf = TokenSparseClassifier(tiny_model, pooling=pooling, **dict(FAST, max_epochs=1)).fit(X, y)
    expected = clf.predict_proba(X[:10])
    folder = clf.to_huggingface(tmp_path / "hf")
    np.testing.assert_allclose(_exported_proba(folder, X[:10]), expected, atol=1e-5)
    if NEEDS_ONNX.args[0]:  # no onnxruntime here: the Hugging Face folder alone
        return
    _, (proba,) = run_onnx(clf.to_onnx(tmp_path / "m.onnx"), clf, X[:10])
    np.testing.assert_allclose(proba, expected, atol=1e-4)

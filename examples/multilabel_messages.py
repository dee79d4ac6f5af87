"""Multi-label: messages that carry several requests get every label that applies.

A message of two BANKING77 requests is labelled with both intents; ``y`` is the 0/1 indicator
table (a pandas DataFrame, one column per intent), and ``predict`` returns one.

    python examples/multilabel_messages.py               # 20 intents, 10 texts each (about a minute on a CPU)
"""

import argparse

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

from sksparseft import TokenSparseClassifier
from sksparseft.datasets import load_banking77


def messages(texts, labels, rng):
    """Every text alone, plus pairs of texts of two intents joined into one message."""
    order = rng.permutation(len(texts))
    out = [(t, {c}) for t, c in zip(texts, labels)]
    for a, b in zip(order[0::2], order[1::2]):
        if labels[a] != labels[b]:
            out.append((f"{texts[a].rstrip('.?! ')}. {texts[b]}", {labels[a], labels[b]}))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--intents", type=int, default=20)
    parser.add_argument("--per-class", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-epochs", type=int, default=8)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    intents = sorted(str(c) for c in rng.choice(sorted(load_banking77().target_names), args.intents, replace=False))
    X_train, y_train = load_banking77("train", return_X_y=True, classes=intents, n_per_class=args.per_class,
                                      random_state=rng)
    X_test, y_test = load_banking77("test", return_X_y=True, classes=intents)

    def table(pairs):
        texts = [t for t, _ in pairs]
        return texts, pd.DataFrame([[int(c in s) for c in intents] for _, s in pairs], columns=intents)

    X_fit, Y_fit = table(messages(X_train, y_train, rng))
    X_eval, Y_eval = table(messages(X_test, y_test, rng))

    clf = TokenSparseClassifier(random_state=args.seed, max_epochs=args.max_epochs).fit(X_fit, Y_fit)
    pred = clf.predict(X_eval)  # 0/1, one column per intent (clf.label_names_)
    print(f"micro-F1 {f1_score(Y_eval, pred, average='micro'):.3f}, macro-F1 {f1_score(Y_eval, pred, average='macro'):.3f}")
    example = "I lost my card. How do I change my PIN?"
    print(example, "->", [clf.label_names_[j] for j in np.flatnonzero(clf.predict([example])[0])])
    return clf


if __name__ == "__main__":
    main()

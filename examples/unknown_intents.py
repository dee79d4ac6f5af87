"""Unknown-intent rejection: requests that fit no known intent get ``unknown_label``.

BANKING77 (bundled) stands in for an assistant that knows 60 intents: the other 17 intents'
test texts play the requests it was never built for.

    python examples/unknown_intents.py                 # 10 texts per known intent (about 2 minutes on a CPU)
    python examples/unknown_intents.py --per-class 40
"""

import argparse

import numpy as np

from sksparseft import TokenSparseClassifier
from sksparseft.datasets import load_banking77


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", type=int, default=10, help="training texts per known intent")
    parser.add_argument("--known", type=int, default=60, help="intents the assistant knows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-epochs", type=int, default=8)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    known = set(rng.choice(sorted(load_banking77().target_names), args.known, replace=False))
    X, y = load_banking77("train", return_X_y=True, classes=sorted(known), n_per_class=args.per_class, random_state=rng)
    X_test, y_test = load_banking77("test", return_X_y=True)
    in_scope = np.asarray([c in known for c in y_test])

    clf = TokenSparseClassifier(unknown_label="unknown", random_state=args.seed, max_epochs=args.max_epochs)
    clf.fit(X, y)
    print(f"threshold (out of fold on the training texts): {clf.unknown_threshold_:.3f}")

    pred = clf.predict(X_test)
    print(f"in-scope accuracy (a rejection counts as an error): {np.mean(pred[in_scope] == y_test[in_scope]):.3f}")
    print(f"unknown requests rejected: {np.mean(pred[~in_scope] == 'unknown'):.3f}")
    print(clf.predict(["can you book me a table for two tonight?", "my card has not arrived yet"]))
    return clf


if __name__ == "__main__":
    main()

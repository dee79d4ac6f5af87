"""Main job: fit TokenSparseClassifier on BANKING77 (bundled) with the embedded model; print accuracy and fit time.

    python examples/banking77.py                  # full train set, official test set
    python examples/banking77.py --n-train 2000   # a quicker run on a stratified subset
    python examples/banking77.py --n-per-class 10 # few-shot: 10 training texts per intent
"""

import argparse
import os
import platform
import time

import torch
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split

from sksparseft import TokenSparseClassifier
from sksparseft.datasets import load_banking77


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-train", type=int, default=None, help="stratified subset of the training set")
    parser.add_argument("--n-per-class", type=int, default=None, help="draw this many training texts per intent")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", choices=["auto", "float32", "bfloat16"],
                        help="what the training passes compute in (auto: bf16 on CUDA, and for the default strategy on CPUs with native bf16)")
    parser.add_argument("--max-epochs", type=int, default=None)
    parser.add_argument("--strategy", default="random", help="random (the default), token_sparse, fisher, full, lora, prefix, layers, bitfit")
    parser.add_argument("--save", default=None, help="pickle the fitted model to this path (joblib)")
    parser.add_argument("--verbose", type=int, default=1)
    args = parser.parse_args()

    X_train, y_train = load_banking77("train", return_X_y=True, n_per_class=args.n_per_class, random_state=args.seed)
    X_test, y_test = load_banking77("test", return_X_y=True)
    if args.n_train and args.n_train < len(X_train):
        X_train, _, y_train, _ = train_test_split(X_train, y_train, train_size=args.n_train, stratify=y_train, random_state=args.seed)

    params = {"random_state": args.seed, "device": args.device, "verbose": args.verbose, "strategy": args.strategy,
              "precision": args.precision}
    if args.max_epochs:
        params["max_epochs"] = args.max_epochs
    clf = TokenSparseClassifier(**params)
    print(f"BANKING77: {len(X_train)} train / {len(X_test)} test texts, {len(set(y_train))} classes; strategy {args.strategy}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"torch threads {torch.get_num_threads()}, device {args.device}"
          + (f" ({torch.cuda.get_device_name()})" if torch.cuda.is_available() and args.device != "cpu" else ""))
    t0 = time.perf_counter()
    clf.fit(X_train, y_train)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    pred = clf.predict(X_test)
    pred_s = time.perf_counter() - t0

    print(f"token groups (first 10): {[g.text for g in clf.token_groups_[:10]]}")
    s = clf.mask_summary_
    print(f"mask: {s['selected']:,} of {s['total']:,} backbone entries ({s['density']:.3%}), "
          f"{clf.n_trainable_params_:,} trainable with the head")
    epochs = [r for r in clf.history_ if r.get("stage") != "linear_probe"]
    plan = clf.finetune_plan_
    print(f"finetune plan: {plan['regime']}, {plan['epochs']} cross-entropy epoch(s) of {plan['steps_per_epoch']} steps")
    print(f"epochs run: {len(epochs)}; weights {clf.interpolation_:g} of the way from the linear probe (0) "
          f"to the finetune (1), chosen on validation"
          + ("; head then refit on all training texts" if clf.refit_head else ""))
    print(f"test accuracy: {accuracy_score(y_test, pred):.4f}   macro-F1: {f1_score(y_test, pred, average='macro'):.4f}")
    print("fit stages (s): " + ", ".join(f"{k} {v:.1f}" for k, v in clf.fit_stages_.items()))
    print(f"fit time: {fit_s:.1f} s   predict time: {pred_s:.1f} s ({len(X_test) / pred_s:.0f} texts/s)   seed {args.seed}")
    if args.save:
        import joblib

        joblib.dump(clf, args.save)
        print(f"saved {args.save}: {os.path.getsize(args.save) / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()

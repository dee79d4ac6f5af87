"""GPU checks: fit on CUDA, pickle, reload in a process that sees no GPU, compare predictions."""

import json
import os
import pickle
import subprocess
import sys
import time

import numpy as np
import torch

from sksparseft import TokenSparseClassifier
from sksparseft.datasets import load_banking77


def main(model, out):
    X, y = load_banking77("train", return_X_y=True)
    Xt, yt = load_banking77("test", return_X_y=True)
    clf = TokenSparseClassifier(model, random_state=0, device="cuda").fit(X, y)
    t = time.perf_counter()
    proba = clf.predict_proba(Xt)
    pred_s = time.perf_counter() - t
    path = os.path.join("/tmp", "gpu_model.pkl")
    with open(path, "wb") as fh:
        pickle.dump(clf, fh)
    np.save("/tmp/gpu_proba.npy", proba)
    code = (
        "import pickle, numpy as np, torch, warnings; warnings.simplefilter('ignore');"
        "assert not torch.cuda.is_available();"
        f"c = pickle.load(open({path!r}, 'rb'));"
        "from sksparseft.datasets import load_banking77; Xt, yt = load_banking77('test', return_X_y=True);"
        "p = c.predict_proba(Xt); g = np.load('/tmp/gpu_proba.npy');"
        "print(str(c.device_), float(np.abs(p - g).max()), float((p.argmax(1) == g.argmax(1)).mean()), float((c.classes_[p.argmax(1)] == yt).mean()))"
    )
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    cpu_device, max_diff, agree, cpu_acc = res.stdout.split() if res.returncode == 0 else (res.stderr[-500:], None, None, None)
    row = {
        "gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "n_train": len(X),
        "test_acc_gpu": float(np.mean(clf.classes_[proba.argmax(1)] == yt)), "fit_s": clf.fit_time_,
        "epochs": len(clf.history_) - 1, "finetuned": clf.finetuned_, "predict_texts_per_s": len(Xt) / pred_s,
        "pickle_mib": os.path.getsize(path) / 2**20, "cpu_reload_device": cpu_device,
        "cpu_vs_gpu_max_proba_diff": max_diff, "cpu_vs_gpu_argmax_agreement": agree, "test_acc_cpu_reload": cpu_acc,
    }
    print(json.dumps(row), flush=True)
    with open(out, "a") as fh:
        fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

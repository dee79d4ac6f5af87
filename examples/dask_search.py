"""Hyperparameter search on a dask.distributed cluster through joblib's dask backend.

    python examples/dask_search.py                              # a LocalCluster on loopback
    python examples/dask_search.py --scheduler tcp://host:8786  # an existing cluster

Every (parameters, fold) fit of GridSearchCV runs as a task on a dask worker; the workers need
sksparseft installed and the backbone available (the packaged default is). The same code points
at a remote scheduler by its address. Needs ``pip install "dask[distributed]"``.
"""

import argparse

import numpy as np
from sklearn.model_selection import GridSearchCV

from sksparseft import TokenSparseClassifier
from sksparseft.datasets import load_banking77


def search_on_dask(estimator, grid, X, y, scheduler=None, n_workers=2, cv=3):
    """Fit ``GridSearchCV(estimator, grid)`` with its fits spread over a dask cluster.

    ``scheduler``: address of a running scheduler; None starts a LocalCluster on 127.0.0.1
    (``n_workers`` processes, one thread each) and closes it afterwards.
    """
    import joblib
    from dask.distributed import Client, LocalCluster

    cluster = None
    if scheduler is None:
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=None)
        scheduler = cluster
    try:
        with Client(scheduler) as client, joblib.parallel_backend("dask"):
            search = GridSearchCV(estimator, grid, cv=cv, n_jobs=-1).fit(X, y)
            workers = len(client.scheduler_info()["workers"])
        return search, workers
    finally:
        if cluster is not None:
            cluster.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scheduler", default=None, help="tcp://host:port of a running dask scheduler")
    ap.add_argument("--n-train", type=int, default=600)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    X, y = load_banking77("train", return_X_y=True)
    idx = np.random.default_rng(0).permutation(len(X))[: args.n_train]
    X, y = [X[i] for i in idx], np.asarray(y)[idx]
    grid = {"strategy": ["token_sparse", "lora"], "learning_rate": [None, 3e-4]}
    search, workers = search_on_dask(TokenSparseClassifier(max_epochs=2, device="cpu", random_state=0), grid, X, y,
                                     scheduler=args.scheduler, n_workers=args.workers)
    print(f"{workers} dask workers; best {search.best_params_}: cv accuracy {search.best_score_:.4f}")


if __name__ == "__main__":
    main()

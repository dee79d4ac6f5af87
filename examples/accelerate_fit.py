"""Data-parallel training on several GPUs through Hugging Face Accelerate.

    accelerate launch --multi_gpu --num_processes 4 examples/accelerate_fit.py
    torchrun --nproc_per_node 4 examples/accelerate_fit.py           # the same, with torch's launcher
    torchrun --nproc_per_node 2 examples/accelerate_fit.py --cpu     # two CPU processes (gloo), to try it

Every process runs this script; TokenSparseClassifier(accelerate=True) picks up the launch,
selects the mask on process 0 and shares it, splits every epoch's batches between the
processes and averages their gradients. All processes end with the same model; process 0
evaluates and saves it.
"""

import argparse

import torch.distributed as dist

from sksparseft import TokenSparseClassifier
from sksparseft.datasets import load_banking77


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu", action="store_true", help="train on CPU processes instead of GPUs")
    ap.add_argument("--max-epochs", type=int, default=8)
    ap.add_argument("--save", default="banking77-ddp.safetensors")
    args = ap.parse_args()

    X, y = load_banking77("train", return_X_y=True)
    clf = TokenSparseClassifier(accelerate=True, device="cpu" if args.cpu else "auto",
                                max_epochs=args.max_epochs, random_state=0)
    clf.fit(X, y)
    if not dist.is_initialized() or dist.get_rank() == 0:
        Xt, yt = load_banking77("test", return_X_y=True)
        world = dist.get_world_size() if dist.is_initialized() else 1
        print(f"{world} processes on {clf.device_.type}: test accuracy {clf.score(Xt, yt):.4f}, fit {clf.fit_time_:.0f} s")
        clf.save(args.save)


if __name__ == "__main__":
    main()

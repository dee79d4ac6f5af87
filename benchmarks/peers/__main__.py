"""``python -m benchmarks.peers setup [PEER ...]``: make the peers' environments."""

import argparse

from . import ENVS, PEERS, setup

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("action", choices=["setup"])
ap.add_argument("peers", nargs="*", choices=PEERS, default=list(PEERS))
args = ap.parse_args()
setup(args.peers)
print(f"peer environments ready under {ENVS}")

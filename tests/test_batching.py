"""Length-bucketed batches (batching.py)."""

import torch


def test_length_buckets_cover_every_row_once_with_less_padding():
    import numpy as np

    from sksparseft.model.batching import LengthBucketSampler

    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 80, size=1000)
    g = torch.Generator().manual_seed(0)
    batches = list(LengthBucketSampler(lengths, 32, shuffle=True, generator=g, pool=10))
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(1000)) and len(batches) == len(LengthBucketSampler(lengths, 32))
    bucket_pad = sum(max(lengths[b]) * len(b) for b in batches)
    plain = torch.randperm(1000, generator=torch.Generator().manual_seed(0)).numpy()
    plain_pad = sum(max(lengths[plain[i:i + 32]]) * len(plain[i:i + 32]) for i in range(0, 1000, 32))
    assert bucket_pad < 0.8 * plain_pad
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert list(LengthBucketSampler(lengths, 32, generator=g1)) == list(LengthBucketSampler(lengths, 32, generator=g2))

"""The torch side: the backbone (resolution, pooling), the classifier module with its sparse
delta and frozen-block cache, masks and where a tensor sits, sensitivity scores, batching,
inference and devices."""

"""What the lab's tests share: the product suite's fast settings (tests/cases.py's ``FAST``)."""

# Two short epochs on the config-built tiny model; a test adds what it needs on top.
FAST = dict(max_epochs=2, batch_size=8, n_sensitivity_samples=8, device="cpu")

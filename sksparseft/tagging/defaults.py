"""The tagger's default strategy, as the rule of docs/research.md ("The tagger's default, and the token-driven part's fair test") chose it.

Kept apart from the code a fit runs: every benchmark row names its own strategy, so the default is
no part of what made a row (``benchmarks/slots.py`` fingerprints the rest).
"""

DEFAULT_STRATEGY = "token_sparse"

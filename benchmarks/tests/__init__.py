"""The lab's tests: the benchmark tool's runner, parts and renderer, and the research screen (benchmarks/research/).

Apart from the product's suite (tests/): ``python -m pytest benchmarks/tests`` from the repository root, which
CI runs after the product's tests.
"""

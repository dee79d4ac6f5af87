"""The benchmark tool of sksparseft: one runner (``python -m benchmarks.run``), its parts, and the renderer."""

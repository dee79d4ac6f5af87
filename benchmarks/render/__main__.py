"""``python -m benchmarks.render``: rewrite every rendered block of the docs from the raw rows."""

from . import render

render()

"""The research lab: how defaults are chosen and what was tried, kept apart from the product.

``dev_screen`` scores leads (``leads``: estimator subclasses that override fit stages, or the
steps a stage offers a subclass, with lab code such as ``views``) on dev splits carved from the
training sets; ``dev_variants`` compares ways of ending a fit on the same kind of split; ``archive/`` holds the rows of retired
diagnostics. Their result rows stay in ``benchmarks/results/`` with every other config's.
Nothing in ``sksparseft`` imports from here, and nothing here patches or copies the package: a
lead changes a fit only through the stage and step methods it overrides.
"""

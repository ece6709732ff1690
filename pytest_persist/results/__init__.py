"""Results: what a round trip or a stored check found, and the reports made of them.

``outcome`` holds ``Outcome`` and ``Difference`` (JSON-able); ``report`` writes the JSON and
markdown reports and the terminal summary lines. Pytest-free; may import ``environments`` and
``backends`` (the backends' order), nothing above.
"""

"""The matrix across versions and the compatibility atlas built from it.

``rows`` are coherent (Python, scikit-learn, numpy) version rows; ``chain`` pairs them into
"saved under A, checked under B"; ``sessions`` installs a row and saves or checks in a nox
session; ``aggregate`` merges the reports into atlas cells; ``break_points`` finds where a
model first stops passing; ``markdown_page``, ``html_page`` and ``publish`` write the atlas.
Pytest-free; may import ``results`` and ``environments``. ``pytest_persist.nox`` is what
noxfiles import.
"""

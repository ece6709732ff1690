"""Environments: where a model was saved and where it is loaded.

``fingerprint`` records the environment (Python, platform, library versions);
``version_warnings`` recognises scikit-learn's version warnings while loading. Pytest-free;
imports nothing else of pytest-persist (every other room may import it).
"""

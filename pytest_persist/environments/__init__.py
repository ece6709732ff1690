"""Environments: where a model was saved and where it is loaded, and rebuilding one.

``fingerprint`` records the environment (Python, platform, the versions of the libraries a
report shows); ``installed`` the complete installed set (every distribution, as ``pip freeze``
lists them, and the index); ``version_warnings`` recognises scikit-learn's version warnings
while loading; ``rebuild`` builds and caches environments with uv, ``releases`` lists a
package's releases an interpreter can install, and ``bisect`` searches for the change between
two installed sets that breaks something, given a callable that tries an environment.
Pytest-free; imports nothing else of pytest-persist (every other room may import it).
"""

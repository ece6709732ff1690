"""What pytest-persist knows about estimators, whoever made them.

``nested`` walks the estimators inside an estimator (a pipeline's steps, a meta-estimator's
base); ``fit_data`` builds every scikit-learn estimator with small defaults and data to fit it,
from its tags. Pytest-free; imports nothing else of pytest-persist.
"""

"""Where a stored artifact is loaded: an isolated, limited, sandboxed child.

``check`` is the parent's side (verify, trust, request, compare -> ``Outcome``); ``child``
the child's (load, call the stored methods, write the results); ``loader`` starts children
(forks of the warm ``fork_server``, or fresh interpreters) with their environment and limits;
``sandbox`` keeps a child from importing out of the store, reading keys or writing outside its
own directory. Pytest-free; may import ``store``, ``roundtrip``, ``results``, ``backends``,
``environments`` and ``estimators``.
"""

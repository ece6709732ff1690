"""Model files as they are on disk, whoever wrote them: what they are, read without loading.

``formats`` recognises a file (pickle, joblib, compressed joblib, cloudpickle, skops, ONNX) and
opens its payload (decompressed, capped in size); ``pickles`` reads a pickle stream with
inert stand-ins for every class it names (past joblib's raw array bytes) and asks picklescan
which of those are dangerous; ``skops_files`` and ``onnx_files`` read the other formats'
own descriptions; ``inspection`` puts it together for ``pytest-persist inspect``. Nothing here
imports or runs anything a file names. Pytest-free; may import ``environments``.
"""

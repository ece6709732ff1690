"""An ONNX model's own description, parsed by the ``onnx`` package (protobuf; ONNX runs no
Python code): IR version, producer, opsets and the operators of every graph, subgraph and
function. skl2onnx does not record the scikit-learn version of the converted model."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["OnnxReading", "read_onnx"]


@dataclass
class OnnxReading:
    ir_version: int | None = None
    producer: str | None = None  # e.g. "skl2onnx 1.20.0"
    #: domain ("ai.onnx" for the default one) -> opset version
    opsets: dict[str, int] = field(default_factory=dict)
    #: "domain.OpType" (plain "OpType" in the default domain) -> count, every graph included
    operators: dict[str, int] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    functions: list[str] = field(default_factory=list)
    external_data: bool = False
    error: str | None = None


def read_onnx(path: Path | str) -> OnnxReading:
    reading = OnnxReading()
    try:
        import onnx
    except ImportError:
        reading.error = (
            "the onnx package is not installed here, so its opsets and operators cannot be "
            "read: pip install onnx (or pytest-persist[onnx])"
        )
        return reading
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        reading.error = f"onnx cannot parse it: {exc}"
        return reading
    reading.ir_version = int(model.ir_version)
    producer = " ".join(p for p in (model.producer_name, model.producer_version) if p)
    reading.producer = producer or None
    reading.opsets = {(o.domain or "ai.onnx"): int(o.version) for o in model.opset_import}
    counts: Counter[str] = Counter()
    graphs: list[Any] = [model.graph]
    for function in model.functions:
        reading.functions.append(f"{function.domain}.{function.name}")
        _count(function.node, counts, graphs)
    while graphs:
        graph = graphs.pop()
        _count(graph.node, counts, graphs)
        for tensor in graph.initializer:
            if tensor.data_location == onnx.TensorProto.EXTERNAL:
                reading.external_data = True
    reading.operators = dict(sorted(counts.items()))
    reading.inputs = [i.name for i in model.graph.input]
    reading.outputs = [o.name for o in model.graph.output]
    reading.metadata = {p.key: p.value[:200] for p in model.metadata_props}
    return reading


def _count(nodes: Any, counts: Counter[str], graphs: list[Any]) -> None:
    for node in nodes:
        counts[f"{node.domain}.{node.op_type}" if node.domain else node.op_type] += 1
        for attribute in node.attribute:  # If / Loop / Scan bodies
            if attribute.HasField("g"):
                graphs.append(attribute.g)
            graphs.extend(attribute.graphs)

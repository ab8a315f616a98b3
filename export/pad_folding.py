"""Fold each constant ``Pad`` into the ``Conv`` / ``MaxPool`` / ``AveragePool`` that it feeds.

A lowered explicit layer (:mod:`kcnn.export.lowering`) reaches the exporter as ``pad`` + a valid
built-in layer; the exporters write that as ``Pad`` → (float ``Cast`` no-ops, a ``Transpose`` to
NCHW) → operator, the amounts as constants or as a small constant subgraph (``torch.onnx``),
evaluated here with ``onnx.reference``. The operators pad by themselves (``pads``), so the
``Pad`` node and its copy of the activation go:

* ``Conv`` — zero padding;
* ``AveragePool`` — zero padding, which the average counts: ``count_include_pad=1`` (only where
  the node had no padding of its own, or already counted it);
* ``MaxPool`` — padding with the lowest float32 or −inf, which is what ``MaxPool``'s own
  padding means.

Anything else (padding of the batch or channel axes, a non-constant amount, another value, a
``Pad`` read by more than one node) is left as it is: the graph stays correct, only slower.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

__all__ = ["fold_pads"]

_TARGETS = ("Conv", "MaxPool", "AveragePool")


def _constants(graph):
    """Tensor name -> NumPy value for initializers and ``Constant`` nodes (``value`` only)."""
    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attr.t)
    return values


def _constant_subgraph_value(name, graph, producers, constants, opsets):
    """Value of ``name`` when it is computed from constants only (evaluated), else ``None``."""
    from onnx.reference import ReferenceEvaluator

    graph_inputs = {v.name for v in graph.input} - set(constants)
    needed, stack, seen = [], [name], set()
    while stack:
        tensor = stack.pop()
        if tensor in seen or tensor in constants or not tensor:
            continue
        seen.add(tensor)
        node = producers.get(tensor)
        if node is None or tensor in graph_inputs or node.domain not in ("", "ai.onnx") \
                or node.op_type in ("Shape", "Size") and node.input[0] in graph_inputs:
            return None
        needed.append(node)
        stack.extend(node.input)
    if len(needed) > 32:
        return None
    order = [n for n in graph.node if any(n is m for m in needed)]
    used = {i for n in order for i in n.input}
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in constants.items() if k in used]
    out = helper.make_tensor_value_info(name, TensorProto.UNDEFINED, None)
    probe = helper.make_model(helper.make_graph(order, "pads", [], [out], inits),
                              opset_imports=opsets)
    try:
        return np.asarray(ReferenceEvaluator(probe).run(None, {})[0])
    except Exception:  # an operator the reference runtime lacks: leave the Pad in place
        return None


def _attr(node, name, default=None):
    for attr in node.attribute:
        if attr.name == name:
            return helper.get_attribute_value(attr)
    return default


def _set_attr(node, name, value):
    kept = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend(kept + [helper.make_attribute(name, value)])


def _pad_spec(pad, constants, value_of):
    """``(pads as 8 ints, fill value)`` of a constant-mode 4-D ``Pad``, else ``None``."""
    mode = _attr(pad, "mode", b"constant")
    if (mode not in (b"constant", "constant") or len(pad.input) < 2
            or (len(pad.input) > 3 and pad.input[3])):
        return None
    pads = constants.get(pad.input[1])
    if pads is None:
        pads = value_of(pad.input[1])
    if pads is None or pads.size != 8:
        return None
    value = 0.0
    if len(pad.input) > 2 and pad.input[2]:
        fill = constants.get(pad.input[2])
        if fill is None or fill.size != 1:
            return None
        value = float(fill.reshape(()))
    return [int(v) for v in pads.reshape(-1)], value


def _only_reader(name, consumers, outputs):
    users = consumers.get(name, [])
    return users[0] if len(users) == 1 and name not in outputs else None


def _value_fits(op, node, value):
    if op == "MaxPool":
        return value <= float(np.finfo(np.float32).min)
    if value != 0.0:
        return False
    if op == "AveragePool":
        own = _attr(node, "pads", [0, 0, 0, 0])
        return not any(own) or _attr(node, "count_include_pad", 0) == 1
    return True


def _path_to_operator(pad, consumers, outputs):
    """``(first reader, transpose perm, operator, tensors in between)`` of the chain
    ``Pad`` → float ``Cast``\* → ``Transpose``? → float ``Cast``\* → operator, else ``None``."""
    perm, between, tensor = [0, 1, 2, 3], [], pad.output[0]
    first = node = _only_reader(tensor, consumers, outputs)
    while node is not None and (node.op_type == "Cast" and _attr(node, "to") == TensorProto.FLOAT
                                or node.op_type == "Transpose" and perm == [0, 1, 2, 3]):
        if node.op_type == "Transpose":
            perm = list(_attr(node, "perm", [3, 2, 1, 0]))
        between.append(node.output[0])
        node = _only_reader(node.output[0], consumers, outputs)
    if node is None:
        return None
    return first, perm, node, between


def fold_pads(model_proto):
    """Fold foldable ``Pad`` nodes of the main graph into their operator; returns how many."""
    graph = model_proto.graph
    constants = _constants(graph)
    producers = {out: node for node in graph.node for out in node.output}
    opsets = list(model_proto.opset_import)
    outputs = {v.name for v in graph.output}
    consumers = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    dropped, stale = set(), set()
    for pad in graph.node:
        if pad.op_type != "Pad" or pad.domain not in ("", "ai.onnx"):
            continue
        path = _path_to_operator(pad, consumers, outputs)
        spec = path and _pad_spec(pad, constants, lambda n: _constant_subgraph_value(
            n, graph, producers, constants, opsets))
        if spec and _fold(pad, spec, *path):
            dropped.add(id(pad))
            stale.update(path[3])
    _drop(graph, dropped, stale, outputs)
    return len(dropped)


def _fold(pad, spec, first, perm, target, between):
    """Move ``pad``'s amounts into ``target``; True when done."""
    if (target.op_type not in _TARGETS or len(perm) != 4
            or _attr(target, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")
            or len(_attr(target, "kernel_shape", [0, 0])) != 2):
        return False
    pads, value = spec
    begins = [pads[axis] for axis in perm]
    ends = [pads[4 + axis] for axis in perm]
    if any(begins[:2]) or any(ends[:2]) or not _value_fits(target.op_type, target, value):
        return False
    own = list(_attr(target, "pads", [0, 0, 0, 0]))
    _set_attr(target, "pads", [own[0] + begins[2], own[1] + begins[3],
                               own[2] + ends[2], own[3] + ends[3]])
    if target.op_type == "AveragePool":
        _set_attr(target, "count_include_pad", 1)
    (first if between else target).input[0] = pad.input[0]
    return True


def _drop(graph, dropped, stale, outputs):
    """Remove the folded ``Pad`` nodes, the shapes recorded for the tensors they padded, and
    initializers nothing reads any more."""
    if not dropped:
        return
    kept = [node for node in graph.node if id(node) not in dropped]
    while True:  # then the nodes that only computed their amounts
        read = {name for node in kept for name in node.input} | outputs
        alive = [node for node in kept if any(out in read for out in node.output)]
        if len(alive) == len(kept):
            break
        kept = alive
    del graph.node[:]
    graph.node.extend(kept)
    infos = [v for v in graph.value_info if v.name not in stale]
    del graph.value_info[:]
    graph.value_info.extend(infos)
    used = {name for node in graph.node for name in node.input}
    unused = [init for init in graph.initializer if init.name not in used | outputs]
    for init in unused:
        graph.initializer.remove(init)

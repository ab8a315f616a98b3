"""ONNX graph surgery applied after the Keras exporter: stable I/O names and shapes, fixes.

Each backend's converter names things its own way (``images``/``Identity:0`` from tf2onnx,
``43`` from torch.onnx, …). :func:`standardize_io` gives every file the same contract: one
float32 input ``images`` of shape ``[batch, H, W, C]`` and one output ``logits`` of shape
``[batch, K]``.
"""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper

INPUT_NAME = "images"
OUTPUT_NAME = "logits"
BATCH_DIM = "batch"
STANDARD_DOMAINS = ("", "ai.onnx", "ai.onnx.ml")


class GraphError(ValueError):
    """The exported graph does not have the shape kcnn expects (one image input, one output)."""


def _rename_everywhere(graph, old, new):
    """Rename tensor ``old`` to ``new`` in ``graph`` (nodes, I/O, value_info, subgraphs)."""
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
        for i, name in enumerate(node.output):
            if name == old:
                node.output[i] = new
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                _rename_everywhere(sub, old, new)
    for collection in (graph.input, graph.output, graph.value_info):
        for value in collection:
            if value.name == old:
                value.name = new
    for init in graph.initializer:
        if init.name == old:
            init.name = new


def _all_names(graph):
    names = {v.name for v in (*graph.input, *graph.output, *graph.value_info, *graph.initializer)}
    for node in graph.node:
        names.update(node.input)
        names.update(node.output)
    return names


def _free_name(graph, wanted):
    """Make ``wanted`` unused in ``graph`` by renaming whatever tensor currently has it."""
    names = _all_names(graph)
    if wanted not in names:
        return
    i = 0
    while f"{wanted}__{i}" in names:
        i += 1
    _rename_everywhere(graph, wanted, f"{wanted}__{i}")


def _set_shape(value, dims):
    tensor_type = value.type.tensor_type
    tensor_type.elem_type = TensorProto.FLOAT
    tensor_type.ClearField("shape")
    for dim in dims:
        entry = tensor_type.shape.dim.add()
        if isinstance(dim, str):
            entry.dim_param = dim
        else:
            entry.dim_value = int(dim)


def standardize_io(model_proto, input_shape, num_classes):
    """Rename the single input to ``images`` and the single output to ``logits`` in place.

    ``input_shape`` is ``(H, W, C)``; shapes are stamped as ``[batch, H, W, C]`` and
    ``[batch, num_classes]``.
    """
    graph = model_proto.graph
    initializers = {init.name for init in graph.initializer}
    inputs = [v for v in graph.input if v.name not in initializers]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise GraphError(
            f"expected a graph with one input and one output; the exporter produced inputs "
            f"{[v.name for v in inputs]} and outputs {[v.name for v in graph.output]}."
        )
    graph_input, graph_output = inputs[0], graph.output[0]
    if graph_input.name == graph_output.name:
        raise GraphError("the exported graph's output is its input; nothing to export.")
    if graph_input.name != INPUT_NAME:
        _free_name(graph, INPUT_NAME)
        _rename_everywhere(graph, graph_input.name, INPUT_NAME)
    if graph_output.name != OUTPUT_NAME:
        _free_name(graph, OUTPUT_NAME)
        _rename_everywhere(graph, graph_output.name, OUTPUT_NAME)
    if graph_output.type.tensor_type.elem_type not in (0, TensorProto.FLOAT):
        raise GraphError(
            f"the exported output has ONNX element type "
            f"{TensorProto.DataType.Name(graph_output.type.tensor_type.elem_type)}; expected FLOAT."
        )
    _set_shape(graph_input, [BATCH_DIM, *input_shape])
    _set_shape(graph_output, [BATCH_DIM, num_classes])


def _int_list(node, name, default):
    for attr in node.attribute:
        if attr.name == name:
            return list(helper.get_attribute_value(attr))
    return list(default)


def fix_high_rank_pooling(model_proto):
    """Rewrite MaxPool/AveragePool nodes with more than 3 spatial dims (unsupported by ORT).

    jax2onnx lowers ``lax.reduce_window_max`` on an NHWC tensor by adding two unit axes and
    pooling over all four original axes with a ``(1, kh, kw, 1)`` window, which onnxruntime
    rejects ("Unsupported pooling size"). Where exactly two of those axes are trivial
    (window 1, stride 1, no padding, no dilation) they become ONNX's N and C axes: the node
    is replaced by ``Transpose -> Pool(kh, kw) -> Transpose`` on the original tensor. Returns
    the number of nodes rewritten.
    """
    graph = model_proto.graph
    producers = {out: node for node in graph.node for out in node.output}
    consumers = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    replacement, drop = {}, set()
    for node in graph.node:
        if node.op_type not in ("MaxPool", "AveragePool") or node.domain not in ("", "ai.onnx"):
            continue
        geometry = _pool_geometry(node)
        chain = _unsqueeze_pool_squeeze(node, geometry, producers, consumers)
        if chain is None:
            continue
        unsq0, unsq1, squeeze = chain
        base = node.name or f"pool_{len(replacement)}"
        replacement[id(node)] = _nc_pool_nodes(node, geometry, unsq0.input[0], squeeze.output[0],
                                               base)
        drop.add(id(squeeze))
        for unsq in (unsq1, unsq0):
            if len(consumers.get(unsq.output[0], [])) == 1:
                drop.add(id(unsq))
    if not replacement:
        return 0
    nodes = []
    for node in graph.node:
        if id(node) in replacement:
            nodes.extend(replacement[id(node)])
        elif id(node) not in drop:
            nodes.append(node)
    nodes = [onnx.NodeProto.FromString(n.SerializeToString()) for n in nodes]
    del graph.node[:]
    graph.node.extend(nodes)
    sort_nodes(model_proto)
    _prune_unused_initializers(graph)
    return len(replacement)


def _pool_geometry(node):
    """Window, strides, pads, dilations of a pooling node, and its trivial / spatial axes."""
    kernel = _int_list(node, "kernel_shape", [])
    rank = len(kernel)
    strides = _int_list(node, "strides", [1] * rank)
    pads = _int_list(node, "pads", [0] * (2 * rank))
    dilations = _int_list(node, "dilations", [1] * rank)
    trivial = [
        i for i in range(rank)
        if kernel[i] == 1 and strides[i] == 1 and dilations[i] == 1
        and pads[i] == 0 and pads[i + rank] == 0
    ]
    spatial = [i for i in range(rank) if i not in trivial]
    return {"kernel": kernel, "strides": strides, "pads": pads, "dilations": dilations,
            "trivial": trivial, "spatial": spatial}


def _unsqueeze_pool_squeeze(node, geometry, producers, consumers):
    """``(unsqueeze0, unsqueeze1, squeeze)`` around a rewritable pool node, else ``None``.

    The two leading unit axes must come from Unsqueeze nodes and the output must be squeezed
    back; only then is the original tensor available to pool directly.
    """
    if len(geometry["kernel"]) <= 3:
        return None
    unsq1 = producers.get(node.input[0])
    unsq0 = producers.get(unsq1.input[0]) if unsq1 is not None else None
    users = consumers.get(node.output[0], [])
    if (len(geometry["trivial"]) != 2 or not 1 <= len(geometry["spatial"]) <= 3
            or unsq1 is None or unsq0 is None
            or unsq1.op_type != "Unsqueeze" or unsq0.op_type != "Unsqueeze"
            or len(users) != 1 or users[0].op_type != "Squeeze"
            or len(_int_list(node, "output_shape", [])) or len(node.output) != 1):
        return None
    return unsq0, unsq1, users[0]


def _nc_pool_nodes(node, geometry, source, target, base):
    """``Transpose -> Pool(spatial axes only) -> Transpose`` from ``source`` to ``target``."""
    kernel, strides, pads = geometry["kernel"], geometry["strides"], geometry["pads"]
    dilations, spatial = geometry["dilations"], geometry["spatial"]
    rank = len(kernel)
    perm = geometry["trivial"] + spatial
    inverse = [perm.index(i) for i in range(rank)]
    t_in, t_out = f"{base}__to_nc", f"{base}__pooled"
    attrs = {
        "kernel_shape": [kernel[i] for i in spatial],
        "strides": [strides[i] for i in spatial],
        "pads": [pads[i] for i in spatial] + [pads[i + rank] for i in spatial],
    }
    if any(dilations[i] != 1 for i in spatial):
        attrs["dilations"] = [dilations[i] for i in spatial]
    for attr in node.attribute:
        if attr.name in ("ceil_mode", "count_include_pad", "auto_pad", "storage_order"):
            attrs[attr.name] = helper.get_attribute_value(attr)
    return [
        helper.make_node("Transpose", [source], [t_in], name=f"{base}__transpose_in", perm=perm),
        helper.make_node(node.op_type, [t_in], [t_out], name=f"{base}__pool", **attrs),
        helper.make_node("Transpose", [t_out], [target], name=f"{base}__transpose_out",
                         perm=inverse),
    ]


def sort_nodes(model_proto):
    """Topologically sort the main graph's nodes in place (stable for already sorted graphs).

    Needed after rewrites, and after onnxruntime's float16 converter, which appends the
    Cast nodes it inserts at the end of the node list.
    """
    graph = model_proto.graph
    nodes = [onnx.NodeProto.FromString(n.SerializeToString()) for n in graph.node]
    del graph.node[:]
    graph.node.extend(_topological(nodes, graph))


def _topological(nodes, graph):
    available = {v.name for v in graph.input} | {i.name for i in graph.initializer} | {""}
    ordered, pending = [], list(nodes)
    while pending:
        progress = False
        rest = []
        for node in pending:
            if all(name in available for name in node.input):
                ordered.append(node)
                available.update(node.output)
                progress = True
            else:
                rest.append(node)
        if not progress:  # leave any remaining order to the checker to report
            ordered.extend(rest)
            break
        pending = rest
    return ordered


def _prune_unused_initializers(graph):
    used = {name for node in graph.node for name in node.input} | {v.name for v in graph.output}
    kept = [init for init in graph.initializer if init.name in used]
    if len(kept) != len(graph.initializer):
        del graph.initializer[:]
        graph.initializer.extend(kept)


def check_domains(model_proto):
    """Drop opset imports no node uses and fail on any non-standard operator domain."""
    used = {node.domain or "" for node in model_proto.graph.node}
    custom = sorted(d for d in used if d not in STANDARD_DOMAINS)
    if custom:
        ops = sorted({n.op_type for n in model_proto.graph.node if n.domain in custom})
        raise GraphError(f"the exported graph uses non-standard operator domains {custom} ({ops}).")
    kept = [op for op in model_proto.opset_import if (op.domain or "") in used | {""}]
    del model_proto.opset_import[:]
    model_proto.opset_import.extend(kept)


def opset_version(model_proto):
    """The default-domain opset of ``model_proto``."""
    for op in model_proto.opset_import:
        if op.domain in ("", "ai.onnx"):
            return int(op.version)
    raise GraphError("the ONNX model imports no default-domain opset.")


class CheckError(ValueError):
    """The final graph failed ``onnx.checker.check_model(full_check=True)``."""


def finalize(model_proto, values):
    """Stamp kcnn metadata and producer on ``model_proto``, then run the full ONNX checker.

    ``values`` maps :mod:`kcnn.export.metadata` keys to (decoded) values.
    """
    from kcnn.export import metadata as meta

    version = meta.kcnn_version()
    model_proto.producer_name = "kcnn"
    model_proto.producer_version = version
    model_proto.doc_string = (
        f"{values.get(meta.MODEL, 'image')} classifier exported by kcnn {version} "
        f"({values.get(meta.BACKEND, '?')} backend, {values.get(meta.EXPORTER, '?')})")
    meta.set_props(model_proto, values)
    try:
        onnx.checker.check_model(model_proto, full_check=True)
    except onnx.checker.ValidationError as err:
        raise CheckError(f"the ONNX graph failed onnx.checker: {err}") from err

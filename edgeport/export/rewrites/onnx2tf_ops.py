"""Let onnx2tf convert the onnxruntime contrib ops the rewrites write (installed in the onnx2tf worker).

Two patches, both needed for com.microsoft::Gelu / FastGelu (rewrites/gelu.py):
- onnx2tf first renames ops with sng4onnx, which rewrites the input file through its own graph
  copy and drops every node's domain. A com.microsoft::Gelu then reads as an ONNX Gelu, which
  onnxruntime has no kernel for before opset 20, so onnx2tf's reference run of the model fails;
  without that run, and without the shapes ONNX's shape inference cannot give past an op it does not
  know, onnx2tf converts blind (it dropped a Transpose, then failed on a [1,64,128] by [64] Mul). The
  wrapper puts the domains, their opset imports and the prepared model's shapes back into the file.
- onnx2tf picks an op's builder by type alone, so com.microsoft::Gelu reaches its Gelu builder
  (tf.nn.gelu, exact); FastGelu has none and gets the Gelu builder with approximate="tanh", which is
  what FastGelu computes (rewrites/gelu.py never gives it FastGelu's optional bias input).
"""

from __future__ import annotations

import sys
import types

_FASTGELU = "onnx2tf.ops.FastGelu"


def install() -> None:
    import onnx2tf.onnx2tf as o2t
    import onnx2tf.ops
    import onnx2tf.ops.Gelu as gelu_op

    if _FASTGELU in sys.modules:
        return

    def make_node(*, graph_node, tf_layers_dict, **kwargs):
        graph_node.attrs["approximate"] = "tanh"
        return gelu_op.make_node(graph_node=graph_node, tf_layers_dict=tf_layers_dict, **kwargs)

    module = types.ModuleType(_FASTGELU, "com.microsoft::FastGelu -> Gelu(approximate='tanh'); see " + __name__)
    module.make_node = make_node
    sys.modules[_FASTGELU] = module
    onnx2tf.ops.FastGelu = module
    o2t.op_name_auto_generate = _keeping_domains(o2t.op_name_auto_generate)


def _keeping_domains(generate):
    def wrapper(*, input_onnx_file_path=None, onnx_graph=None, output_onnx_file_path=None, **kwargs):
        import onnx

        source = onnx_graph if onnx_graph is not None else onnx.load(input_onnx_file_path)
        domains = {n.name: n.domain for n in source.graph.node if n.domain not in ("", "ai.onnx")}
        imports = [o for o in source.opset_import if o.domain not in ("", "ai.onnx")]
        result = generate(input_onnx_file_path=input_onnx_file_path, onnx_graph=onnx_graph,
                          output_onnx_file_path=output_onnx_file_path, **kwargs)
        if not domains or result is None:
            return result
        for node in result.graph.node:
            node.domain = domains.get(node.name, node.domain)
        known = {o.domain for o in result.opset_import}
        result.opset_import.extend(o for o in imports if o.domain not in known)
        # sng4onnx re-infers shapes, and ONNX's shape inference stops at a contrib op: copy the
        # shapes the prepared model already carries, or onnx2tf converts what follows shape-blind
        shaped = {v.name: v for v in source.graph.value_info if _static(v)}
        kept = [v for v in result.graph.value_info if _static(v) or v.name not in shaped]
        typed = {v.name for v in [*kept, *result.graph.input, *result.graph.output]}
        del result.graph.value_info[:]
        result.graph.value_info.extend([*kept, *(v for name, v in shaped.items() if name not in typed)])
        if output_onnx_file_path:
            onnx.save(result, output_onnx_file_path)
        return result

    return wrapper


def _static(value_info) -> bool:
    t = value_info.type.tensor_type
    return t.HasField("shape") and all(d.HasField("dim_value") and d.dim_value > 0 for d in t.shape.dim)

"""Checkpoint loading, ONNX export/normalisation and ONNX -> TFLite conversion.

Owns:
- loading: every checkpoint kind (checkpoint: LoadedModel, Param), state_dict forms (state_forms),
  .pt2 archives saved on a GPU (pt2_device), `--const` binding (constants, onnx_constants), and the
  refusal of shapes this machine cannot export (memory);
- to ONNX: torch_to_onnx, normalisation for onnx2tf (onnx_prep, tf2onnx_layout, pool_padding and the
  rewrites/ subpackage), source <-> TFLite layouts (layout), TFLite op -> ONNX node -> module (trace_names);
- to TFLite: the converter interface (backend); the onnx2tf backend (onnx2tf_backend, to_tflite in the
  parent, tflite_worker with fused_lstm in the child); the LiteRT Torch backend (litert_torch_backend,
  litert_torch, litert_torch_worker); `--exporter` (select, and arbitrate for auto).
May import: edgeport.errors, edgeport.types, edgeport.modes, edgeport.progress, edgeport.tflite.runner,
edgeport.validate.judge, edgeport.quantize.aeq_modes
Three modules reach into later stages, each for one fact it must share with them: trace_names runs the
TFLite model quantizing inputs as the runner does (tflite.runner), arbitrate weighs exporters by the
verdict's own checks (validate.judge), and the LiteRT Torch worker quantizes in its child process with
the same AEQ recipes as `--quant` (quantize.aeq_modes, imported lazily).
"""

"""Compare the written TFLite model with the float reference, and judge the result.

Owns: running the float reference and the TFLite model on the same samples (run), per-output metrics
(metrics), label checks (labels), stateful streaming models (streaming), the task a convert judges and
its figures (task_score), converter-or-quantization blame (divergence), the ops XNNPACK refuses
(xnnpack), speed warnings (speed), budgets as checks (verdict) and the verdict itself (judge).
May import: edgeport.errors, edgeport.types, edgeport.profiles, edgeport.tasks, edgeport.export,
edgeport.tflite, edgeport.latency.simulator
run maps outputs between layouts and flattens torch outputs as the export did (export.layout,
export.torch_to_onnx) and keeps the runner's output order (tflite.runner); divergence and xnnpack name
an op by its ONNX node and PyTorch module (export.trace_names); speed prices ops with the simulator.
"""

"""The mixed-precision search skeleton: which ops go float (or int16 activations, a16w8) under a budget.

Owns: one question, asked by one skeleton with two builders plugged in.
- candidates: units (an op plus the ops that read its output, through data-movement ops) and the
  groups of consecutive units the AEQ scoring measures;
- budget: what meeting the accuracy budget means (task metric, label drop, top-1, SNR), and one
  number to rank by;
- refine: the shared loop (the fewest ranked candidates that fit, by doubling and bisection) and the
  objective between two models that fit (simulated latency, then bytes);
- rules: the Edge TPU float-tail rule (only the last ops may be float), used by both builders;
- rows: report.json `quantization.layers`, with ONNX node and PyTorch module names.
The builders: the AEQ recipe (aeq_search, with probe_runner for its proxy runs; every candidate a
recipe rewrite of one calibrated float model) and the TF converter (converter in the parent and
converter_worker in a child, one converter run per candidate, fanned out over processes by fanout;
converter.rebuild_choice also rebuilds the AEQ search's choice with the converter).
May import: edgeport.errors, edgeport.progress, edgeport.quantize.aeq, edgeport.tflite,
edgeport.latency.simulator, edgeport.export.layout, edgeport.export.trace_names, edgeport.validate.run,
edgeport.validate.metrics, edgeport.validate.task_score, edgeport.validate.xnnpack
"""

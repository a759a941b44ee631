"""The quantize stage: every precision that is not plain converter output, and how it is chosen.

Owns: AI Edge Quantizer recipes on a float .tflite (aeq; aeq_modes for the w8/w4 and a16w8 builds,
weight_only for the weight-only modes), cross-layer equalization before a search (equalize), the
`--quant mixed` stages the pipeline calls (stage), the comparison of a mixed or weight-only model
with fp16 (fp16_compare), the `--quant auto` choice (auto), and the mixed-precision search skeleton
(search/).
May import: edgeport.errors, edgeport.modes, edgeport.profiles, edgeport.progress, edgeport.tflite,
edgeport.latency.simulator, edgeport.data.calibration, edgeport.export.backend, edgeport.export.layout,
edgeport.export.onnx_prep
"""

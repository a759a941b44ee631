"""The data stage: calibration and validation sets, image folders, preprocessing, and the model's I/O.

Owns: loading `.npz`/image-folder/builtin data into named, batch-first arrays (calibration), reading
image folders (imagefolder), parsing `--preprocess` (preprocessing), and matching data to the model's
inputs and outputs (model_io).
May import: edgeport.errors, edgeport.types, edgeport.tasks.labels, edgeport.validate.labels, edgeport.export
calibration reads the task labels saved beside `x` in a data .npz (tasks.labels) and checks class ids
against the model (validate.labels); model_io loads and probes the model to learn its inputs and
outputs (export: checkpoint, memory, onnx_prep, torch_to_onnx).
"""

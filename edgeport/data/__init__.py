"""The data stage: calibration and validation sets, image folders, preprocessing, and the model's I/O.

Owns: loading `.npz`/image-folder/builtin data into named, batch-first arrays (calibration), reading
image folders (imagefolder), parsing `--preprocess` (preprocessing), and matching data to the model's
inputs and outputs (model_io).
May import: edgeport.errors, edgeport.types, edgeport.tasks (task labels in .npz files),
edgeport.validate (label checks) and edgeport.export (loading the model to learn its I/O).
"""

"""Reading and running .tflite files.

Owns: reading a model through the flatbuffer schema that ai-edge-litert ships (reader: ops, dtypes,
MACs, bytes), and the child-process runner that feeds samples and times a model (runner).
May import: edgeport.errors
Only reader does. The runner imports nothing of edgeport at all: it is copied alone to devices
(runners/device_eval) and must run there on Python 3.7+ with only a TFLite runtime.
"""

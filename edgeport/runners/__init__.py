"""Where a .tflite runs: this host (local), an Android phone (adb) or a Linux board (ssh).

Owns: parsing `--target` (targets) and what every runner shares (common); timing on an Android phone
over adb (adb, reading benchmark_model's log with benchmark_log) and on a Linux board over ssh (ssh,
which runs remote_bench there), and the dispatch between them (device); validation inputs run on the
device (device_eval, which runs remote_eval there); the emulated arm64 board (board, board_build).
May import: edgeport.errors, edgeport.types, edgeport.profiles, edgeport.progress, edgeport.options,
edgeport.tflite.runner, edgeport.validate
device checks its run counts with the commands' own option checkers (options); device_eval quantizes
inputs and reads outputs as the host runner does (tflite.runner) and compares the device's outputs
exactly as the host's are compared (validate.metrics, validate.run). remote_bench and remote_eval
import nothing of edgeport: they are copied alone to the device and run there.
"""

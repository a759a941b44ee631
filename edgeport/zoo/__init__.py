"""Small built-in models with weights shipped in the repo, so demos and tests run offline.

Owns: the models, by family: digits_net, vit, cnn_families, detector_net, linear_heavy, hard_cases,
recurrent, sequence_models, streaming, transformer_blocks; one small model per task with its data
(task_models) and faults planted on their outputs (task_faults).
May import: edgeport.tasks, edgeport.validate.metrics
task_models makes its detection labels with the task's decoder and NMS (tasks.detection); task_faults
carries TaskLabels, and when run as a script scores each fault with the task metrics and SNR.
"""

"""The report stage: report.json, the console summary, and report.html with its inline SVG charts.

Owns: laying out report.json from a run's results (build), the text summary and atomic writes
(summary), the HTML page (html) and its charts (charts).
May import: the stages whose results it lays out (export, quantize, validate, data) and the core
(errors, types, modes, profiles). Nothing imports it but the commands (cli, pipeline, bench, sweep).
"""

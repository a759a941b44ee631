"""The report stage: report.json, the console summary, and report.html with its inline SVG charts.

Owns: laying out report.json from a run's results (build), the text summary and atomic writes
(summary), the HTML page (html) and its charts (charts).
May import: edgeport.types, edgeport.modes, edgeport.profiles, edgeport.data.model_io, edgeport.export,
edgeport.quantize, edgeport.validate
build lays out the typed results of the stages it reports (data.model_io; export.checkpoint and
export.select; validate.judge, metrics and run; quantize.search.rows to verify the layers kept float);
summary prints `--quant auto`'s choice with quantize.auto. Besides the commands (cli, pipeline, bench),
summary's atomic writes and versions are used by compress, latency.host_fit and sweep, and sweep's
results.html reuses the charts and the page's CSS.
"""

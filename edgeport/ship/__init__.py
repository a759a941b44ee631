"""Shipping a converted model into an app: `edgeport ship` and `edgeport ship --check`.

Owns: the app-folder bundle and its manifest (bundle), the drift check for an app's CI (check), and
standard TFLite metadata written and read through the schema (metadata).
May import: edgeport.errors and edgeport.types only: shipping reads finished artifacts, never a stage.
"""

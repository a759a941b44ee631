"""Shipping a converted model into an app: `edgeport ship` and `edgeport ship --check`.

Owns: the app-folder bundle and its manifest (bundle), the drift check for an app's CI (check), and
standard TFLite metadata written and read through the schema (metadata).
May import: edgeport.errors, edgeport.types
Shipping reads finished artifacts, never a stage.
"""

"""Precompute, the results bundle, findings, Altair charts, the JSON and HTML reports.
Imports every engine subpackage; nothing in the engine imports it back.
"""

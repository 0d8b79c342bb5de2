"""Settings, errors, progress callbacks and the content-keyed disk cache shared by every subpackage.
Imports nothing else from explorer.
"""

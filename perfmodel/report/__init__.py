"""Renderers: terminal tables, PNG plots and Excel workbooks of what the engine computed."""

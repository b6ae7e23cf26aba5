"""One module per sheet: ``NAME``, ``wanted(data)`` and ``write(book, ws, data, layout)``."""

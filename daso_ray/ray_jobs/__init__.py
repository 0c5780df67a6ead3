"""The Ray layer (DESIGN.md principle 8): Tuner -> trial driver -> worker fn.

``space`` (the search-file format) imports no Ray, so a broken file fails before Ray starts.
"""

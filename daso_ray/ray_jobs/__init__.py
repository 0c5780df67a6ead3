"""The Ray layer, three thin levels: Tuner -> trial driver -> worker fn (docs/architecture.md,
"Packages and layers").

``space`` (the search-file format) imports no Ray, so a broken file fails before Ray starts.
"""

"""The taxonomy of training speedups: its axes, and the catalogue of published methods placed on them.

`axes` holds the four axes; `catalogue.yaml` the methods (schema in `schema`, loading in `catalogue`);
`queries`, `export`, `render` and `figure` answer questions about it; `cli` is `algospeed taxonomy`.
"""

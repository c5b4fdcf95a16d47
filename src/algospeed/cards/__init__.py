"""Method cards: everything a user needs to pick and use one method, in one place.

A card joins what the method declares (its docstring, place, settings), the catalogue's entry (the
paper and the speedup it reports), how to use it (CLI, Python trainer, plain function, the Lightning
and Hugging Face callbacks where they work) and the measured evidence behind suggested settings (the
shipped recipes that use it). `card` builds the records, `render` prints them for the terminal and as
Markdown (`algospeed methods --markdown docs/methods.md`), `cli` is `algospeed methods`.
"""

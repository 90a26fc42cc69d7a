"""Data: the chorale tokenizer, the music21 Bach corpus, the TFDS chorale dataset and the grain loader.

Modules: :mod:`govjax.data.tokenizer`, :mod:`govjax.data.corpus`, :mod:`govjax.data.chorales`,
:mod:`govjax.data.loader` (imported on demand: music21, TFDS and grain are slow to import).
"""

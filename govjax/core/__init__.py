"""The core layer: what every other govjax package builds on, importing no other govjax package.

- :mod:`govjax.core.losses`: next-token losses (``PAD`` targets are not scored).
- :mod:`govjax.core.config`: the typed training configuration, Python config files and ``--set`` overrides.
- :mod:`govjax.core.checkpoint`: Orbax checkpoints of the train state with JSON metadata.
- :mod:`govjax.core.mesh`: the device mesh (``data`` axis) and sharding helpers.
- :mod:`govjax.core.ids`: work-id conventions (canaries, structural material, real works).
- :mod:`govjax.core.trees`: parameter paths as strings.
- :mod:`govjax.core.errors`: errors a user can fix (the command line prints them on one line).
"""

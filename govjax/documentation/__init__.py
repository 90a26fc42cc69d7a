"""Tiered documentation of training sources: fingerprints, Croissant manifest, duplicates and lookup.

- :mod:`~govjax.documentation.music_fingerprint`, :mod:`~govjax.documentation.text_fingerprint`,
  :mod:`~govjax.documentation.image_fingerprint`: tier 2b content hashes and tier 3 robust fingerprints.
- :mod:`~govjax.documentation.tiers`: per-work records with tiers 1-3 (rights + treatment, sha256s,
  fingerprints).
- :mod:`~govjax.documentation.croissant`: the Croissant 1.1 JSON-LD document (validated by mlcroissant in the
  tests) and the checks govjax relies on when loading it.
- :mod:`~govjax.documentation.manifest`: writing / loading a manifest directory (re-exports the above).
- :mod:`~govjax.documentation.dataset_manifest`, :mod:`~govjax.documentation.run_manifest`: manifests of the
  prepared dataset (policy treatments) and of a training run (the treatments the run applied).
- :mod:`~govjax.documentation.duplicates`: near-duplicate report inside the training set.
- :mod:`~govjax.documentation.lsh`: candidate search over MinHash signatures (datasketch ``MinHashLSH``) and the
  Clopper-Pearson bound on false-positive rates (scipy).
- :mod:`~govjax.documentation.lookup`: rights-holder lookup from the manifest alone (``govjax lookup``), with
  a run's audit and provenance from :mod:`~govjax.documentation.run_outputs`.
"""

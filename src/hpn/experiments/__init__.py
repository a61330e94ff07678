"""Experiments as data: ``hpn bench NAME`` runs one spec or one micro-benchmark.

* :mod:`~hpn.experiments.sweep`: the one sweep runner (a spec's variants x seeds, each run
  trained or read back from its folder, resumable, ``--jobs`` one-thread processes).
* :mod:`~hpn.experiments.table`: the one table printer (header line with the machine, a
  Markdown table of the columns a spec declares).
* ``specs/*.yaml``: one file per training benchmark (classification, multitask, blog,
  assignment, longtail, transfer, glyphs).
* :mod:`~hpn.experiments.registry`: the name -> spec or function table behind ``hpn bench``.
* micro-benchmarks that are not sweeps: :mod:`~hpn.experiments.prototypes` (prototypes,
  optima), :mod:`~hpn.experiments.scale`, :mod:`~hpn.experiments.reliability` (fuzz),
  :mod:`~hpn.experiments.estimators` (sklearn); :mod:`~hpn.experiments.hooks` holds the
  functions specs name.
"""

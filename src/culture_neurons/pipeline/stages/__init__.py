"""The pipeline's stages, one module each: ``export``, ``score``, ``select``, ``evaluate``, ``train``, ``report``.

Each module defines ``STAGE``, a :class:`~culture_neurons.pipeline.runner.Stage` (a name and a
function of the run's :class:`~culture_neurons.pipeline.runner.Context`), and
:mod:`culture_neurons.pipeline.run` lists them in order. A new stage (e.g. ``validate``) is a new
module here plus one entry in that list; see docs/design.md, "Adding a stage".
"""

"""The project's experiments on the embedded benchmark: the ablation grid and its statistics
(:mod:`gald.experiments.ablation`, :mod:`gald.experiments.stats`), and whether a model sees the
global cue (:mod:`gald.experiments.analysis`)."""

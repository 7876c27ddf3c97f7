"""Training, evaluation and prediction: what runs a model on data.

* :mod:`gald.engine.segmentation` and :mod:`gald.engine.detection` — ``train_step``, ``evaluate``, ``fit``.
* :mod:`gald.engine.evaluation` — a checkpoint under the paper's test protocol.
* :mod:`gald.engine.inference` — the test protocol (whole image, sliding windows, scales, flip).
* :mod:`gald.engine.predictor` — one :class:`~gald.engine.predictor.Predictor` for the CLI, the app and the notebooks.
* :mod:`gald.engine.runtime`, :mod:`gald.engine.distributed`, :mod:`gald.engine.checkpoint`,
  :mod:`gald.engine.loop` — seeds, devices, logging, processes, checkpoints, loss meters.
* :mod:`gald.engine.memory` — activation checkpointing of backbone stages (less memory, more time).
"""

"""Running trained models elsewhere: faster CPU inference, ONNX, the authors' weights, test-server files.

* :mod:`gald.deploy.fuse` — BatchNorm folded into convolutions, channels-last (``optimize_for_inference``).
* :mod:`gald.deploy.nnpack` — wide 3×3 convolutions through NNPACK on CPU.
* :mod:`gald.deploy.export` — ONNX export, checked in onnxruntime.
* :mod:`gald.deploy.official` — the authors' GALD-Net weights to ``gald`` official mode and back.
* :mod:`gald.deploy.submission` — prediction PNGs in the Cityscapes test server's format.
"""

"""``python app/demo.py`` — serve the GALD demo app (the logic lives in :mod:`gald.app`).

Examples::

    python app/demo.py                                   # the shipped synthetic-benchmark model, 127.0.0.1:7860
    python app/demo.py --checkpoint runs/<name>/model.pt --port 8080
    python app/demo.py --checkpoint GALD_res101_city.pth  # the authors' weights, converted on load
"""

from __future__ import annotations

import logging
import os
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    from gald.app import main

    main(sys.argv[1:])

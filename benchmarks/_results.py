"""What every benchmark's result file records, written the same way (imported by the scripts here)."""

from __future__ import annotations

import json
import os
import platform


def machine() -> dict:
    """The machine a result was measured on."""
    return {"cpus": os.cpu_count(), "platform": platform.platform()}


def write_json(record: dict, path: str) -> None:
    """Write ``record`` to ``path`` atomically (a temporary file renamed into place)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(record, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def report(record: dict, path: str, *, write: bool = True) -> None:
    """Print ``record`` as JSON and, unless ``write`` is false (a ``--smoke`` run), write it to ``path``."""
    print(json.dumps(record, indent=2))
    if write:
        write_json(record, path)

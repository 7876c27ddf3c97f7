"""``torch.hub`` entry points: every builder of :func:`gald.models.list_models`, random weights.

    model = torch.hub.load("path/to/gald", "gald_resnet50", source="local", num_classes=19)
    torch.hub.list("<owner>/gald")          # a GitHub repository: every entry point

Keyword arguments go to the builder (:func:`gald.models.get_model`). For trained weights, load a
pretrained folder or Hub repository with :func:`gald.hub.from_pretrained`.
"""

dependencies = ["torch", "torchvision", "numpy", "scipy", "PIL", "yaml", "tqdm"]

from gald.models import get_model as _get_model  # noqa: E402
from gald.models import list_models as _list_models  # noqa: E402


def _entry(name: str):
    def build(**kwargs):
        return _get_model(name, **kwargs)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"``{name}`` (:func:`gald.models.get_model`): keyword arguments go to its builder."
    return build


for _name in _list_models():
    globals()[_name] = _entry(_name)

import pytest
import torch
from conftest import DownloadAttempted

from gald.models import MODELS


def test_the_guard_refuses_downloads():
    with pytest.raises(DownloadAttempted):
        torch.hub.load_state_dict_from_url("https://example.invalid/w.pth")


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_default_builders_never_download(arch):
    with torch.device("meta"):
        MODELS[arch]()  # the guard turns any download into a failure

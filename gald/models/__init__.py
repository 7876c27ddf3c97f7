"""GALD models: backbones, Global Aggregation, Local Distribution, heads and segmentors (``nn.Module`` s only).

The speed levers that used to live here (``fuse_conv_bn``, ``optimize_for_inference``,
``convert_to_nnpack``, ...) are in :mod:`gald.deploy`; their old names here still resolve for one
minor release.
"""

from .backbones import (
    BACKBONES,
    ResNetBackbone,
    build_backbone,
    resnet50,
    resnet101,
    tiny_resnet,
)
from .context import (
    ASPP,
    GA_MODULES,
    CGNL2d,
    GlobalAggregation,
    NonLocal2d,
    PSPModule,
    build_ga,
    get_ga,
)
from .heads import ARRANGEMENTS, LD_ARRANGEMENTS, AuxHead, GALDBlock, GALDHead
from .ld import LD_DOWNSAMPLING, LD_INITS, LD_INTERVENTIONS, PAPER_LD, LocalDistribution
from .segmentor import (
    MODELS,
    GALDNet,
    build_model,
    gald_resnet50,
    gald_resnet101,
    gald_tiny,
)
from .hosts import HOSTS, build_host
from .inspection import gald_block, inspect, is_gald_model, num_classes, stage_classifiers, stage_layer
from .plug import GALDInsert, inserts, plug
from .registry import get_model, list_models
from .state_dict import load_state_dict_checked
from .weights import (
    TASKS,
    WrongTaskError,
    checkpoint_task,
    load_model,
    model_from_checkpoint,
    read_checkpoint,
    require_task,
)

__all__ = [
    "ARRANGEMENTS",
    "ASPP",
    "AuxHead",
    "BACKBONES",
    "CGNL2d",
    "GALDBlock",
    "GALDInsert",
    "HOSTS",
    "build_host",
    "gald_block",
    "inserts",
    "inspect",
    "is_gald_model",
    "num_classes",
    "plug",
    "stage_classifiers",
    "stage_layer",
    "GALDHead",
    "GALDNet",
    "GA_MODULES",
    "GlobalAggregation",
    "LD_ARRANGEMENTS",
    "LD_DOWNSAMPLING",
    "LD_INITS",
    "LD_INTERVENTIONS",
    "PAPER_LD",
    "LocalDistribution",
    "MODELS",
    "NonLocal2d",
    "PSPModule",
    "ResNetBackbone",
    "build_backbone",
    "build_ga",
    "build_model",
    "gald_resnet101",
    "gald_resnet50",
    "gald_tiny",
    "get_ga",
    "get_model",
    "list_models",
    "load_model",
    "load_state_dict_checked",
    "model_from_checkpoint",
    "checkpoint_task",
    "TASKS",
    "WrongTaskError",
    "require_task",
    "read_checkpoint",
    "resnet101",
    "resnet50",
    "tiny_resnet",
]

# Deprecated names (moved to gald.deploy in 0.2.0), resolved on first use for one minor release.
_MOVED_TO_FUSE = ("count_batch_norms", "fuse_conv_bn", "optimize_for_inference")
_MOVED_TO_NNPACK = ("NNPACKConv2d", "convert_to_nnpack", "nnpack_available")


def __getattr__(name: str):
    if name in _MOVED_TO_FUSE:
        from gald.deploy import fuse

        return getattr(fuse, name)
    if name in _MOVED_TO_NNPACK:
        from gald.deploy import nnpack

        return getattr(nnpack, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

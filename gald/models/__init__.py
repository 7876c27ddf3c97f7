"""GALD models: backbones, Global Aggregation, Local Distribution, heads and segmentors."""

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
from .fuse import count_batch_norms, fuse_conv_bn, optimize_for_inference
from .heads import ARRANGEMENTS, LD_ARRANGEMENTS, AuxHead, GALDBlock, GALDHead
from .ld import LD_DOWNSAMPLING, LD_INITS, LD_INTERVENTIONS, PAPER_LD, LocalDistribution
from .nnpack import NNPACKConv2d, convert_to_nnpack, nnpack_available
from .segmentor import (
    MODELS,
    GALDNet,
    build_model,
    gald_resnet50,
    gald_resnet101,
    gald_tiny,
)
from .weights import load_model, load_state_dict_checked, model_from_checkpoint, read_checkpoint

__all__ = [
    "ARRANGEMENTS",
    "ASPP",
    "AuxHead",
    "BACKBONES",
    "CGNL2d",
    "GALDBlock",
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
    "NNPACKConv2d",
    "NonLocal2d",
    "PSPModule",
    "ResNetBackbone",
    "build_backbone",
    "build_ga",
    "build_model",
    "convert_to_nnpack",
    "count_batch_norms",
    "fuse_conv_bn",
    "gald_resnet101",
    "gald_resnet50",
    "gald_tiny",
    "get_ga",
    "load_model",
    "load_state_dict_checked",
    "model_from_checkpoint",
    "nnpack_available",
    "optimize_for_inference",
    "read_checkpoint",
    "resnet101",
    "resnet50",
    "tiny_resnet",
]

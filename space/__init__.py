"""What an architecture is: genomes, the search space, the torch model, graph and cost."""

from . import presets
from .blocks import BlockSpec, conv_output_size, resolve_blocks, round_channels
from .errors import GenomeError, NasError, SpaceError
from .genome import Genome, Stage
from .graph import Cost, cost, graph
from .search_space import SearchSpace
from .timm_format import TimmArch, TimmFormatError, from_timm, to_timm

__all__ = ["Genome", "Stage", "SearchSpace", "build", "graph", "cost", "Cost", "presets",
           "round_channels", "resolve_blocks", "BlockSpec", "conv_output_size",
           "NasError", "GenomeError", "SpaceError", "TimmArch", "TimmFormatError", "from_timm",
           "to_timm"]


def __getattr__(name: str):
    # torch is imported on first use of build(): genomes, costs and the search space do
    # not need it, and importing it costs two seconds on every `nas` command.
    if name == "build":
        from .model import build

        return build
    raise AttributeError(f"module 'space' has no attribute {name!r}")

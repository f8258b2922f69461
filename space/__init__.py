"""What an architecture is: genomes, the search space, the torch model, graph and cost."""

from . import presets
from .blocks import BlockSpec, conv_output_size, resolve_blocks, round_channels
from .errors import GenomeError, NasError, SpaceError
from .genome import Genome, SearchContext, Stage
from .graph import Cost, cost, graph
from .search_space import SearchSpace
from .timm_format import TimmArch, TimmFormatError, from_timm, to_timm
from .units import Unit, units

__all__ = ["Genome", "Stage", "SearchContext", "SearchSpace", "build", "graph", "cost", "Cost",
           "presets", "round_channels", "resolve_blocks", "BlockSpec", "conv_output_size",
           "NasError", "GenomeError", "SpaceError", "TimmArch", "TimmFormatError", "from_timm",
           "to_timm", "Unit", "units", "unit_module"]


def __getattr__(name: str):
    # torch is imported on first use of build(): genomes, costs and the search space do
    # not need it, and importing it costs two seconds on every `nas` command.
    if name in ("build", "unit_module"):
        from . import model

        return getattr(model, name)
    raise AttributeError(f"module 'space' has no attribute {name!r}")

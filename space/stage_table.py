"""A genome's per-stage table, as ``nas show``, the report and the dashboard's trial notes
print it: the stem, stages 1..N (the numbers of the Optuna parameters, ``stage3_...`` is
row 3) and the head, with one column per stage field that declares one in
:data:`space.schema.STAGE_FIELDS`.
"""

from __future__ import annotations

from typing import Any

from .blocks import conv_output_size
from .genome import Genome, Stage
from .schema import STAGE_FIELDS

__all__ = ["STAGE_COLUMNS", "stage_rows", "stage_table", "operator_text"]

_FIELD_COLUMNS = tuple(field for field in STAGE_FIELDS if field.column)
STAGE_COLUMNS = ("stage", "operator", *(field.column for field in _FIELD_COLUMNS),
                 "resolution")


def operator_text(stage: Stage) -> str:
    """The operator as the papers' Table 1 writes it: ``MBConv6, k3x3``."""
    return f"{stage.operator}, k{stage.kernel_size}x{stage.kernel_size}"


def _row(stage: Any, operator: str, values: dict[str, Any], size: int) -> dict[str, Any]:
    return {"stage": stage, "operator": operator,
            **{field.column: values.get(field.name) for field in _FIELD_COLUMNS},
            "resolution": size}


def stage_rows(genome: Genome, resolution: int) -> list[dict[str, Any]]:
    """One dict per row, keyed by :data:`STAGE_COLUMNS`: ``stage`` is "stem", 1..N or
    "head"; ``resolution`` the row's input size at ``resolution`` pixels; a field that
    does not apply to the stem or head is None."""
    rows = [_row("stem", "Conv3x3", {"num_layers": 1, "out_channels": genome.stem_channels,
                                     "stride": 2}, resolution)]
    size = conv_output_size(resolution, 3, 2)
    for index, stage in enumerate(genome.stages):
        rows.append(_row(index + 1, operator_text(stage),
                         {field.name: getattr(stage, field.name) for field in _FIELD_COLUMNS},
                         size))
        size = conv_output_size(size, stage.kernel_size, stage.stride)
    rows.append(_row("head", "Conv1x1, pooling, FC",
                     {"num_layers": 1, "out_channels": genome.head_channels, "stride": 1}, size))
    return rows


def stage_table(genome: Genome, resolution: int) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """:data:`STAGE_COLUMNS` and the rows of :func:`stage_rows` as text (``224×224``)."""
    cells = {field.column: field.cell for field in _FIELD_COLUMNS}
    text = []
    for row in stage_rows(genome, resolution):
        text.append(tuple(
            f"{value}\u00d7{value}" if column == "resolution"
            else "" if value is None
            else cells[column](value) if column in cells else str(value)
            for column, value in row.items()))
    return STAGE_COLUMNS, text

"""A chain report's numbers in words, one wording for the command line and the app's Reports page.

A chain report (:mod:`embridge.core.report.chain`) has no upgraded cell and no headline: its numbers
are the compatibility matrix C[i][j] of query version i against gallery version j (j ≤ i), AC and AM,
and the criterion of each pair below the diagonal, all measured on the protocols it records.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def matrix_lines(chain: Mapping[str, Any]) -> list[str]:
    """The matrix of the chain's metric, query version by row and gallery version by column, as text."""
    versions, matrix = list(chain.get("versions") or []), chain.get("matrix") or []
    rows = [f"{v:>12} " + " ".join(f"{x:.3f}" if j <= i else "  -  " for j, x in enumerate(matrix[i]))
            for i, v in enumerate(versions)]
    return [f"compatibility matrix ({chain.get('metric')}), query model by row, gallery model by column:", *rows]


def scores_line(chain: Mapping[str, Any]) -> str:
    return f"AC {chain['ac']:.3f}  AM {chain['am']:.3f}"


def note_lines(chain: Mapping[str, Any]) -> list[str]:
    """Why AC cannot be read as compatibility on this chain's relevance, when it cannot."""
    return [f"note: {chain['ac_note']}"] if chain.get("ac_note") else []


def measured_lines(chain: Mapping[str, Any]) -> list[str]:
    return [f"measured on {sentence}" for sentence in chain.get("measured_on") or []]


def chain_lines(chain: Mapping[str, Any]) -> list[str]:
    """What ``embridge chain`` prints: the matrix, AC and AM, and where they were measured."""
    return [*matrix_lines(chain), scores_line(chain), *note_lines(chain), *measured_lines(chain)]


def criterion_lines(chain: Mapping[str, Any]) -> list[str]:
    """Each pair below the diagonal against the gallery version's own number: 'v2 queries / v1 gallery:
    0.812 above v1/v1 0.790 (passes)'."""
    metric = chain.get("metric")
    return [f"{c['query']} queries / {c['gallery']} gallery: {metric} {c['value']:.3f} "
            f"{'above' if c['passes'] else 'not above'} {c['gallery']}/{c['gallery']} {c['reference']:.3f} "
            f"({'passes' if c['passes'] else 'fails'})" for c in chain.get("criterion") or []]


def chain_cells(chain: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """Every measured pair as a cell ('v2/v1': {metric: value}) of every metric the report holds."""
    versions = list(chain.get("versions") or [])
    matrices = chain.get("matrices") or {chain.get("metric"): chain.get("matrix") or []}
    return {f"{versions[i]}/{versions[j]}": {m: values[i][j] for m, values in matrices.items()}
            for i in range(len(versions)) for j in range(i + 1)}

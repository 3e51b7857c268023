"""Heads and layers: the first paper's tools on the lens's first-order pieces.

- ``collect`` / ``Contributions``: token-summed direct contributions of an image set, one traced
  pass per batch; every ablation below is arithmetic on them, never another forward pass.
- ``ablation_curve``: zero-shot accuracy with MLPs and the first k attention layers mean-ablated.
- ``text_span`` / ``build_head_roles`` / ``HeadRoles``: each late head explained by texts.
- ``debias``: worst-group accuracy before and after mean-ablating heads, against random heads.
- ``group_vectors`` / ``nearest`` / ``precision_at_k``: retrieval by a group of heads.
"""

from neuronattack.heads.ablation import AblationCurve, ablation_curve, run_ablate, write_ablation
from neuronattack.heads.contributions import (
    Contributions,
    collect,
    contributions,
    last_layers,
    parse_head,
)
from neuronattack.heads.debias import (
    DebiasReport,
    GroupAccuracy,
    debias,
    read_grouped_csv,
    run_debias,
)
from neuronattack.heads.retrieve import group_vectors, nearest, precision_at_k, run_retrieve
from neuronattack.heads.text_pool import TextPool, load_text_pool
from neuronattack.heads.textspan import (
    HeadRoles,
    TextBasis,
    build_head_roles,
    heads_mean_ablated,
    replaced_by_texts,
    roles_and_clip,
    select_heads,
    text_span,
)

__all__ = [
    "AblationCurve",
    "Contributions",
    "DebiasReport",
    "GroupAccuracy",
    "HeadRoles",
    "TextBasis",
    "TextPool",
    "ablation_curve",
    "build_head_roles",
    "collect",
    "contributions",
    "debias",
    "group_vectors",
    "heads_mean_ablated",
    "last_layers",
    "load_text_pool",
    "nearest",
    "parse_head",
    "precision_at_k",
    "read_grouped_csv",
    "replaced_by_texts",
    "run_ablate",
    "run_debias",
    "run_retrieve",
    "roles_and_clip",
    "select_heads",
    "text_span",
    "write_ablation",
]

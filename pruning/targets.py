"""Which structural units a denoiser has, where they live, and what each one costs in parameters.

A *unit group* is the set of units of one kind inside one module: the heads of one attention module, or
the hidden units of one feed-forward. Each group knows

- its *producers*: linears whose output rows belong to units (q/k/v projections, the first FFN linear;
  GEGLU contributes two rows per unit, one in each half),
- its *consumers*: linears whose input columns belong to units (attention output projections, the second
  FFN linear; FLUX's single-block ``proj_out`` reads attention heads and MLP units side by side),
- its *container*: the module that becomes a constant when every unit is removed (or None when removing
  the producers and columns is already exact, as for the FLUX single-block MLP).

Masks, scores, plans and surgery are all written against this description, so supporting a new
architecture means adding one discovery function per block class here and registering it in
:mod:`pruning.architectures`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

HEADS = "heads"
FFN = "ffn"
KINDS = (HEADS, FFN)


@dataclass(frozen=True)
class Producer:
    """A linear whose output rows are owned by units: rows ``offset + u*width .. +width`` for each ``offset``."""

    path: str
    offsets: tuple[int, ...] = (0,)


@dataclass(frozen=True)
class Consumer:
    """A linear whose input columns ``offset + u*width .. +width`` are owned by the units."""

    path: str
    offset: int = 0


@dataclass
class UnitGroup:
    name: str  # unique, e.g. "down_blocks.1.attentions.0.transformer_blocks.0.attn1:heads"
    kind: str  # HEADS or FFN
    module: str  # path of the attention / feed-forward module the units belong to
    n_units: int
    width: int  # rows per unit in each producer offset (head_dim for heads, 1 for FFN units)
    producers: list[Producer]
    consumers: list[Consumer]
    container: str | None  # replaced by its constant output when every unit is removed
    params_per_unit: int = 0
    params_shared: int = 0  # container parameters that vanish only when the whole group goes
    meta: dict = field(default_factory=dict)

    def params_removed(self, n_removed: int) -> int:
        removed = n_removed * self.params_per_unit
        return removed + (self.params_shared if n_removed == self.n_units else 0)

    @property
    def params_total(self) -> int:
        return self.params_removed(self.n_units)


def _linear(root: nn.Module, path: str) -> nn.Linear:
    module = root.get_submodule(path)
    if not isinstance(module, nn.Linear):
        raise TypeError(f"{path} is a {type(module).__name__}, expected nn.Linear")
    return module


def count_costs(root: nn.Module, group: UnitGroup) -> UnitGroup:
    """Fill params_per_unit / params_shared from the actual layer shapes."""
    per_unit, inside = 0, 0
    container = root.get_submodule(group.container) if group.container else None
    inside_ids = {id(p) for p in container.parameters()} if container is not None else set()
    for prod in group.producers:
        lin = _linear(root, prod.path)
        rows = group.width * len(prod.offsets)
        cost = rows * lin.in_features + (rows if lin.bias is not None else 0)
        per_unit += cost
        inside += cost if id(lin.weight) in inside_ids else 0
    for cons in group.consumers:
        lin = _linear(root, cons.path)
        cost = group.width * lin.out_features
        per_unit += cost
        inside += cost if id(lin.weight) in inside_ids else 0
    group.params_per_unit = per_unit
    if container is not None:
        group.params_shared = sum(p.numel() for p in container.parameters()) - group.n_units * inside
    return group


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


# --- Unit discovery, one function per transformer-block class (registered in pruning.architectures) -------


def _attention_heads(path: str, n_units: int, head_dim: int, producers, consumers) -> UnitGroup:
    return UnitGroup(
        name=f"{path}:heads",
        kind=HEADS,
        module=path,
        n_units=n_units,
        width=head_dim,
        producers=producers,
        consumers=consumers,
        container=path,
        meta={"head_dim": head_dim},
    )


def basic_block_units(block: nn.Module, path: str) -> list[UnitGroup]:
    """SDXL-style U-Nets: diffusers' BasicTransformerBlock (self- and cross-attention, GEGLU feed-forward)."""
    from diffusers.models.attention import FeedForward
    from diffusers.models.attention_processor import Attention

    groups = []
    for attn_name in ("attn1", "attn2"):
        attn = getattr(block, attn_name, None)
        if attn is None or isinstance(attn, ConstantModule) or not isinstance(attn, Attention):
            continue
        a = _join(path, attn_name)
        head_dim = attn.inner_dim // attn.heads
        groups.append(
            _attention_heads(
                a, attn.heads, head_dim, [Producer(f"{a}.to_{x}") for x in "qkv"], [Consumer(f"{a}.to_out.0")]
            )
        )
    ff = getattr(block, "ff", None)
    if isinstance(ff, FeedForward):
        groups.append(_feedforward_group(ff, _join(path, "ff")))
    return groups


def _feedforward_group(ff: nn.Module, path: str) -> UnitGroup:
    from diffusers.models.activations import GEGLU, GELU

    act = ff.net[0]
    if isinstance(act, GEGLU):
        hidden = act.proj.out_features // 2
        offsets = (0, hidden)  # value half and gate half
    elif isinstance(act, GELU):
        hidden = act.proj.out_features
        offsets = (0,)
    else:
        raise TypeError(f"{path}: unsupported feed-forward activation {type(act).__name__} (GEGLU or GELU)")
    return UnitGroup(
        name=f"{path}:ffn",
        kind=FFN,
        module=path,
        n_units=hidden,
        width=1,
        producers=[Producer(f"{path}.net.0.proj", offsets)],
        consumers=[Consumer(f"{path}.net.2")],
        container=path,
        meta={"activation": type(act).__name__},
    )


def flux_double_block_units(block: nn.Module, path: str) -> list[UnitGroup]:
    """FLUX's double-stream FluxTransformerBlock: joint attention over image and text, two feed-forwards."""
    from diffusers.models.attention import FeedForward

    groups = []
    attn = block.attn
    if not isinstance(attn, ConstantModule):
        a = f"{path}.attn"
        producers = [Producer(f"{a}.{x}") for x in ("to_q", "to_k", "to_v")]
        producers += [Producer(f"{a}.add_{x}_proj") for x in "qkv"]
        consumers = [Consumer(f"{a}.to_out.0"), Consumer(f"{a}.to_add_out")]
        groups.append(
            _attention_heads(a, attn.inner_dim // attn.head_dim, attn.head_dim, producers, consumers)
        )
    for ff_name in ("ff", "ff_context"):
        ff = getattr(block, ff_name)
        if isinstance(ff, FeedForward):
            groups.append(_feedforward_group(ff, f"{path}.{ff_name}"))
    return groups


def flux_single_block_units(block: nn.Module, path: str) -> list[UnitGroup]:
    """FLUX's single-stream FluxSingleTransformerBlock: proj_out reads cat([attention, MLP hidden])."""
    groups = []
    attn_width = block.proj_out.in_features - block.proj_mlp.out_features
    if not isinstance(block.attn, ConstantModule):
        a = f"{path}.attn"
        head_dim = block.attn.head_dim
        producers = [Producer(f"{a}.{x}") for x in ("to_q", "to_k", "to_v")]
        groups.append(
            _attention_heads(
                a, attn_width // head_dim, head_dim, producers, [Consumer(f"{path}.proj_out", 0)]
            )
        )
    if block.proj_mlp.out_features > 0:
        groups.append(
            UnitGroup(
                name=f"{path}.proj_mlp:ffn",
                kind=FFN,
                module=f"{path}.proj_mlp",
                n_units=block.proj_mlp.out_features,
                width=1,
                producers=[Producer(f"{path}.proj_mlp")],
                consumers=[Consumer(f"{path}.proj_out", attn_width)],
                container=None,  # a zero-width proj_mlp is already exact
            )
        )
    return groups


class ConstantModule(nn.Module):
    """Stands in for a module whose units were all removed: returns its (input-independent) output.

    ``outputs`` holds one constant vector per output stream; each is broadcast over the batch and token
    dimensions of the input it corresponds to. A zero-length vector yields a zero-width tensor (FLUX
    single-block attention, whose output is concatenated with the MLP branch).
    """

    def __init__(self, outputs: list[torch.Tensor], stream_inputs: list[str], tuple_output: bool):
        super().__init__()
        self.stream_inputs = list(stream_inputs)
        self.tuple_output = tuple_output
        for i, value in enumerate(outputs):
            self.register_buffer(f"constant_{i}", value.detach().clone())

    def forward(self, hidden_states=None, *args, **kwargs):
        inputs = {"hidden_states": hidden_states, **kwargs}
        outs = []
        for i, name in enumerate(self.stream_inputs):
            ref = inputs[name]
            const = getattr(self, f"constant_{i}")
            outs.append(const.to(ref.dtype).expand(*ref.shape[:-1], const.shape[-1]))
        return tuple(outs) if self.tuple_output else outs[0]


def prunable_params(groups: list[UnitGroup]) -> int:
    return sum(g.params_total for g in groups)

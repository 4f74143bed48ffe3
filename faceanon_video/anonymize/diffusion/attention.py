"""Reference attention as two diffusers attention processors: a writer and a reader.

The mechanism of "Face Anonymization Made Simple" (Kung et al., WACV 2025) in stock diffusers:

* A ReferenceNet (an SD 2.1 ``UNet2DConditionModel``) runs once on the face's VAE latents. The
  :class:`ReferenceWriter` processor on its self-attentions records each block's normalised
  self-attention input (``norm1(hidden_states)``, which is what ``attn1`` receives).
* The main UNet's self-attentions get the :class:`ReferenceReader` processor: queries from the
  UNet's own tokens, keys/values from ``[own, source reference, conditioning reference]``.

Which states are used: the original hands every attention of a UNet block the tuple of states
recorded in the same ReferenceNet block and indexes it by transformer-layer number, so the
transformer layer ``i`` of every attention in block ``b`` reads the state of the ``i``-th
transformer layer of the block (flat order over the block's attentions). With SD 2.1's one layer
per attention that is the *first* attention of each block: 7 "sites" (down 0-2, mid, up 1-3).

Efficiency: the original concatenates the references onto the queries too and keeps the first
third of the output; taking queries from the own tokens only gives the same numbers for a third
of the attention work (softmax rows are independent).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

__all__ = [
    "ReferenceSite",
    "StateStore",
    "ReferenceWriter",
    "ReferenceReader",
    "reference_sites",
    "install_writers",
    "install_readers",
]

_ATTN1 = re.compile(
    r"^(?P<block>down_blocks\.(?P<down>\d+)|mid_block|up_blocks\.(?P<up>\d+))"
    r"\.attentions\.(?P<attn>\d+)\.transformer_blocks\.(?P<layer>\d+)\.attn1\.processor$"
)


@dataclass(frozen=True, order=True)
class ReferenceSite:
    """One reference state: UNet block (``order`` sorts down < mid < up) and transformer layer."""

    order: int
    block: str  # "down_blocks.0", "mid_block", "up_blocks.1", ...
    layer: int

    @property
    def name(self) -> str:
        return f"{self.block.replace('.', '')}_layer{self.layer}"


def _parse(processor_name: str) -> tuple[ReferenceSite, int] | None:
    """(site read by this attn1, flat index of this attn1 within its block) or None."""
    m = _ATTN1.match(processor_name)
    if m is None:
        return None
    if m["down"] is not None:
        order = int(m["down"])
    elif m["up"] is not None:
        order = 1000 + int(m["up"])
    else:
        order = 500
    return ReferenceSite(order, m["block"], int(m["layer"])), int(m["attn"])


def _layers_per_attention(unet: UNet2DConditionModel) -> dict[str, int]:
    layers: dict[str, int] = {}
    for name in unet.attn_processors:
        parsed = _parse(name)
        if parsed is not None:
            site, _ = parsed
            layers[site.block] = max(layers.get(site.block, 0), site.layer + 1)
    return layers


def reference_sites(unet: UNet2DConditionModel) -> list[ReferenceSite]:
    """The states the main UNet reads, in a fixed order (7 for SD 2.1). Same for any UNet of one
    architecture, so the ReferenceNets' and the UNet's lists match."""
    sites = set()
    for name in unet.attn_processors:
        parsed = _parse(name)
        if parsed is not None:
            sites.add(parsed[0])
    return sorted(sites)


@dataclass
class StateStore:
    """Where writers put and readers find the reference states of the current forward pass."""

    states: dict[ReferenceSite, torch.Tensor] = field(default_factory=dict)

    def clear(self) -> None:
        self.states.clear()


class ReferenceWriter:
    """Records ``attn1``'s input (the block's ``norm1`` output), then does plain self-attention."""

    def __init__(self, store: StateStore, site: ReferenceSite | None) -> None:
        self.store = store
        self.site = site  # None: this attention's state is never read; don't keep it alive
        self.inner = AttnProcessor2_0()

    def __call__(self, attn: Attention, hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if self.site is not None:
            self.store.states[self.site] = hidden_states
        return self.inner(attn, hidden_states, *args, **kwargs)


class ReferenceReader:
    """Self-attention whose keys/values also see the source and conditioning references."""

    def __init__(self, source: StateStore, conditioning: StateStore, site: ReferenceSite) -> None:
        self.source = source
        self.conditioning = conditioning
        self.site = site
        self.inner = AttnProcessor2_0()

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        **kwargs,
    ) -> torch.Tensor:
        context = torch.cat(
            [hidden_states, self.source.states[self.site], self.conditioning.states[self.site]], dim=1
        )
        return self.inner(attn, hidden_states, encoder_hidden_states=context, attention_mask=attention_mask, temb=temb)


def install_writers(refnet: UNet2DConditionModel) -> tuple[StateStore, list[ReferenceSite]]:
    """Put writers on every self-attention of ``refnet``; returns their store and the sites recorded.

    Idempotent: a second call on the same module reuses the installed writers' store, so two
    wrappers of one model don't silently disconnect each other.
    """
    sites = reference_sites(refnet)
    installed = [p for p in refnet.attn_processors.values() if isinstance(p, ReferenceWriter)]
    if installed:
        return installed[0].store, sites
    store = StateStore()
    layers = _layers_per_attention(refnet)
    wanted = set(sites)
    processors = {}
    for name, old in refnet.attn_processors.items():
        parsed = _parse(name)
        if parsed is None:
            processors[name] = old
            continue
        site, attn_index = parsed
        # The flat (attention, layer) index within the block is what the UNet reads as its "layer".
        flat = attn_index * layers[site.block] + site.layer
        recorded = ReferenceSite(site.order, site.block, flat)
        processors[name] = ReferenceWriter(store, recorded if recorded in wanted else None)
    refnet.set_attn_processor(processors)
    return store, sites


def install_readers(unet: UNet2DConditionModel) -> tuple[StateStore, StateStore, list[ReferenceSite]]:
    """Put readers on every self-attention of ``unet``; returns the source and conditioning
    stores they read and the sites. Idempotent like :func:`install_writers`."""
    installed = [p for p in unet.attn_processors.values() if isinstance(p, ReferenceReader)]
    if installed:
        return installed[0].source, installed[0].conditioning, reference_sites(unet)
    source, conditioning = StateStore(), StateStore()
    processors = {}
    for name, old in unet.attn_processors.items():
        parsed = _parse(name)
        processors[name] = old if parsed is None else ReferenceReader(source, conditioning, parsed[0])
    unet.set_attn_processor(processors)
    return source, conditioning, reference_sites(unet)

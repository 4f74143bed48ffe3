"""The reference attention processors reproduce the paper's mechanism on stock diffusers modules."""

from __future__ import annotations

import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor2_0

from faceanon_video.anonymize.diffusion.attention import ReferenceReader, ReferenceSite, StateStore


def test_seven_sites_first_attention_of_each_block(backend):
    names = [site.name for site in backend.sites]
    assert names == [
        "down_blocks0_layer0",
        "down_blocks1_layer0",
        "down_blocks2_layer0",
        "mid_block_layer0",
        "up_blocks1_layer0",
        "up_blocks2_layer0",
        "up_blocks3_layer0",
    ]


def test_writer_records_norm1_output_of_first_attention(tiny_models, backend):
    """The state of block b is what attn1 of its *first* attention receives: norm1(hidden)."""
    refnet = tiny_models.referencenet
    seen = {}
    block = refnet.down_blocks[1].attentions[0].transformer_blocks[0]
    other = refnet.down_blocks[1].attentions[1].transformer_blocks[0]

    def recorder(key):
        def hook(module, args, kwargs):
            seen[key] = args[0].clone()

        return hook

    hooks = [
        block.attn1.register_forward_pre_hook(recorder("first"), with_kwargs=True),
        other.attn1.register_forward_pre_hook(recorder("second"), with_kwargs=True),
    ]
    try:
        torch.manual_seed(0)
        latents, embeds = torch.randn(2, 4, 8, 8), torch.randn(2, 1, 32)
        states = backend.reference_states(latents, embeds, "source")
    finally:
        for hook in hooks:
            hook.remove()
    assert torch.equal(states[1], seen["first"])
    assert not torch.allclose(states[1], seen["second"])  # the second attention is not the one read


def test_reader_equals_full_concatenated_attention(tiny_models):
    """Queries from own tokens only == the original's attention over [own, refs] cut to the first third."""
    attn = tiny_models.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1
    site = ReferenceSite(0, "down_blocks.0", 0)
    torch.manual_seed(0)
    own, source, cond = (torch.randn(2, 64, attn.query_dim) for _ in range(3))
    source_store, cond_store = StateStore({site: source}), StateStore({site: cond})
    ours = ReferenceReader(source_store, cond_store, site)(attn, own)
    everything = torch.cat([own, source, cond], dim=1)
    original = AttnProcessor2_0()(attn, everything, encoder_hidden_states=everything)[:, :64]
    torch.testing.assert_close(ours, original, rtol=1e-5, atol=1e-6)


def test_reference_states_are_pure(backend):
    torch.manual_seed(0)
    latents, embeds = torch.randn(1, 4, 8, 8), torch.randn(1, 1, 32)
    first = backend.reference_states(latents, embeds, "conditioning")
    backend.reference_states(torch.randn(3, 4, 8, 8), torch.randn(3, 1, 32), "conditioning")
    again = backend.reference_states(latents, embeds, "conditioning")
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    with pytest.raises(ValueError, match="source"):
        backend.reference_states(latents, embeds, "identity")


def test_unet_depends_on_both_references(backend):
    torch.manual_seed(0)
    latents, embeds = torch.randn(1, 4, 8, 8), torch.randn(1, 1, 32)
    states = backend.reference_states(latents, embeds, "source")
    other = backend.reference_states(torch.randn(1, 4, 8, 8), embeds, "source")
    sample, context = torch.randn(1, 4, 8, 8), torch.cat([embeds, embeds], 1)
    base = backend.unet(sample, torch.tensor([500]), context, states, states)
    assert not torch.allclose(base, backend.unet(sample, torch.tensor([500]), context, other, states))
    assert not torch.allclose(base, backend.unet(sample, torch.tensor([500]), context, states, other))

"""Every method's transformation as a plain function, for users with their own training loop.

    >>> import torch
    >>> from torch import nn
    >>> from algospeed.functional import apply_blurpool, mixup_batch, smooth_labels
    >>> model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Conv2d(16, 16, 3, stride=2))
    >>> apply_blurpool(model)  # in place; returns how many layers it made anti-aliased
    1
    >>> inputs, targets = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 1])
    >>> mixed, soft = mixup_batch(inputs, targets, classes=3, alpha=0.2, generator=torch.Generator().manual_seed(0))
    >>> mixed.shape, soft.shape  # mixed inputs and mixed label probabilities
    (torch.Size([4, 3, 8, 8]), torch.Size([4, 3]))
    >>> smooth_labels(torch.tensor([2]), classes=3, smoothing=0.3)
    tensor([[0.1000, 0.1000, 0.8000]])

Each function is the one its `Method` plug-in uses; see `algospeed methods show NAME` for the card.
"""

from __future__ import annotations

from algospeed.methods.data.batch_size_ramp import ramped_batch_size
from algospeed.methods.data.colout import colout_batch
from algospeed.methods.data.curriculum import curriculum_ranking, pacing_fraction
from algospeed.methods.data.cutmix import cutmix_batch
from algospeed.methods.data.cutout import cutout_batch
from algospeed.methods.data.data_echoing import EchoingLoader, reaugment
from algospeed.methods.data.data_pruning import prune_indices
from algospeed.methods.data.mixup import mixup_batch
from algospeed.methods.data.progressive_resizing import progressive_resize
from algospeed.methods.data.selective_backprop import selective_backprop_batch
from algospeed.methods.model.bf16_autocast import bf16_autocast
from algospeed.methods.model.blurpool import apply_blurpool
from algospeed.methods.model.channels_last import batch_to_channels_last, to_channels_last
from algospeed.methods.model.ghost_batchnorm import apply_ghost_batchnorm
from algospeed.methods.model.layer_freezing import freeze_layers
from algospeed.methods.model.low_rank import apply_low_rank
from algospeed.methods.model.progressive_growing import grow
from algospeed.methods.model.squeeze_excite import apply_squeeze_excite
from algospeed.methods.model.stochastic_depth import apply_stochastic_depth
from algospeed.methods.model.weight_standardization import apply_weight_standardization
from algospeed.methods.optimization.ademamix import ademamix, ademamix_schedule
from algospeed.methods.optimization.cautious import cautious
from algospeed.methods.optimization.ema import averaged_copy, ema_update
from algospeed.methods.optimization.gradient_clipping import adaptive_clip_grad_, clip_gradients
from algospeed.methods.optimization.label_smoothing import smooth_labels
from algospeed.methods.optimization.lamb import lamb
from algospeed.methods.optimization.lars import lars
from algospeed.methods.optimization.lion import lion
from algospeed.methods.optimization.lookahead import lookahead
from algospeed.methods.optimization.muon import hidden_matrices, muon
from algospeed.methods.optimization.normuon import normuon
from algospeed.methods.optimization.prodigy import prodigy
from algospeed.methods.optimization.sam import sharpness_aware_gradients
from algospeed.methods.optimization.schedule_free import schedule_free
from algospeed.methods.optimization.shampoo import shampoo
from algospeed.methods.optimization.soap import soap
from algospeed.methods.optimization.swa import recompute_batchnorm, swa_update
from algospeed.methods.shared.schedules import Cosine, OneCycle, StepDecay, WarmupStableDecay
from algospeed.methods.shared.scoring import el2n, proxy_scores

__all__ = [
    "Cosine",
    "EchoingLoader",
    "OneCycle",
    "StepDecay",
    "WarmupStableDecay",
    "adaptive_clip_grad_",
    "ademamix",
    "ademamix_schedule",
    "apply_blurpool",
    "apply_ghost_batchnorm",
    "apply_low_rank",
    "apply_squeeze_excite",
    "apply_stochastic_depth",
    "apply_weight_standardization",
    "averaged_copy",
    "batch_to_channels_last",
    "bf16_autocast",
    "cautious",
    "clip_gradients",
    "colout_batch",
    "curriculum_ranking",
    "cutmix_batch",
    "cutout_batch",
    "el2n",
    "ema_update",
    "freeze_layers",
    "grow",
    "hidden_matrices",
    "lamb",
    "lars",
    "lion",
    "lookahead",
    "mixup_batch",
    "muon",
    "normuon",
    "pacing_fraction",
    "prodigy",
    "progressive_resize",
    "proxy_scores",
    "prune_indices",
    "ramped_batch_size",
    "reaugment",
    "recompute_batchnorm",
    "schedule_free",
    "selective_backprop_batch",
    "shampoo",
    "sharpness_aware_gradients",
    "smooth_labels",
    "soap",
    "swa_update",
    "to_channels_last",
]

# The airbench image tricks (whitening, dirac init, batch-norm hyperparameters, alternating flip, TTA), and
# the NanoGPT speedrun's schedule and depth methods for sequence models (sequence length, attention window,
# token and layer dropping, depth stacking, batch-size warmup) and architecture methods (rotary, ALiBi, QK-norm,
# ReLU-squared, SwiGLU, logit soft-capping, untied head, value embeddings, U-net skips).
from algospeed.methods.data.alternating_flip import alternating_flip_batch
from algospeed.methods.data.batch_size_warmup import warmup_batch_size
from algospeed.methods.data.sequence_length_warmup import crop_tokens
from algospeed.methods.data.tta import tta_logits
from algospeed.methods.model.alibi import alibi_slopes, apply_alibi
from algospeed.methods.model.batchnorm_hparams import batchnorm_bias_factory, set_batchnorm_momentum
from algospeed.methods.model.depth_stacking import stack_blocks, truncate_blocks
from algospeed.methods.model.dirac_init import apply_dirac_init
from algospeed.methods.model.logit_softcap import apply_logit_softcap, softcap
from algospeed.methods.model.progressive_layer_drop import apply_layer_drop, keep_probabilities
from algospeed.methods.model.qk_norm import apply_qk_norm
from algospeed.methods.model.relu_squared import apply_relu_squared
from algospeed.methods.model.rotary import apply_rotary, rotate
from algospeed.methods.model.sliding_window import set_window
from algospeed.methods.model.swiglu import apply_swiglu
from algospeed.methods.model.token_dropping import apply_token_dropping, drop_tokens_through, kept_positions
from algospeed.methods.model.unet_skips import apply_unet_skips
from algospeed.methods.model.untied_head import untie_head
from algospeed.methods.model.value_embeddings import apply_value_embeddings
from algospeed.methods.model.whitening import apply_whitening, whitening_filters

__all__ += [
    "alternating_flip_batch",
    "apply_dirac_init",
    "apply_whitening",
    "batchnorm_bias_factory",
    "set_batchnorm_momentum",
    "tta_logits",
    "whitening_filters",
]

__all__ += [
    "apply_layer_drop",
    "apply_token_dropping",
    "crop_tokens",
    "drop_tokens_through",
    "keep_probabilities",
    "kept_positions",
    "set_window",
    "stack_blocks",
    "truncate_blocks",
    "warmup_batch_size",
]

__all__ += [
    "alibi_slopes",
    "apply_alibi",
    "apply_logit_softcap",
    "apply_qk_norm",
    "apply_relu_squared",
    "apply_rotary",
    "apply_swiglu",
    "apply_unet_skips",
    "apply_value_embeddings",
    "rotate",
    "softcap",
    "untie_head",
]

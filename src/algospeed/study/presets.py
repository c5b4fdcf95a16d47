"""Embedded study presets: `algospeed study --preset quick` is the README's main job."""

from __future__ import annotations

from typing import Any

from algospeed.errors import UsageError

PRESETS: dict[str, dict[str, Any]] = {
    # mnist1d: the baseline, a cheaper-steps method and a fewer-steps method, at three budgets
    # with three seeds; about five minutes on 2 cores.
    "quick": {
        "name": "quick",
        "workload": "mnist1d",
        "arms": {"baseline": [], "progressive_resizing": ["progressive_resizing"], "ema": ["ema"]},
        "budgets": ["4ep", "8ep", "16ep"],
        "seeds": 3,
        "eval_interval": "0.125dur",
        "currency": "reference",  # wall-clock on a shared machine measures the neighbours; see README
    },
    # shakespeare-char: the baseline GPT with AdamW against a NanoGPT-speedrun-style stack and each of its parts
    # alone, every arm given the same four learning-rate trials in [4e-4, 1e-2] at the full budget (with three
    # half-budget trials in [1e-3, 8e-3] the trials were erratic and the baseline chose the smallest of them:
    # baseline_tuning_edge voided the claim); judged on validation loss to 2.55 nats/char (the tuned baseline
    # ended at 2.468 in an earlier run) in the reference currency, with tokens beside it (`algospeed report
    # --currency tokens`), and an ablation table. The model is the workload's GPT at a quarter of its cost per
    # token (width 64, context 64) and the budget is 5e5 tokens: 6 arms x (3 seeds + 4 trials), 2.1e7 tokens in
    # all, 6 min 13 s on 2 nearly idle cores.
    "lm": {
        "name": "lm",
        "workload": "shakespeare-char",
        "options": {"width": 64, "context": 64, "eval_tokens": 16384},
        "arms": {
            "baseline": [],
            "stack": ["muon", "rotary", "batch_size_warmup", "sequence_length_warmup"],
            **{name: [name] for name in ("muon", "rotary", "batch_size_warmup", "sequence_length_warmup")},
        },
        "budgets": ["5e5tok"],
        "seeds": 3,
        "target": 2.55,
        "eval_interval": "0.1dur",
        "currency": "reference",
        "tuning": {"trials": 4, "budget": "5e5tok", "space": {"lr": {"log": [4.0e-4, 1.0e-2]}}},
    },
    # The shipped recipe mnist1d-fast, found by `algospeed recipe search` (recipes/mnist1d-fast.search.md), against
    # the baseline, both tuned alike: 8 quasi-random learning rates in [1e-3, 1e-1]. The search's own final study
    # tuned both with 3 draws that clustered low (0.00047-0.0047) and found 3.4x; with 6 draws up to 0.015 the
    # baseline chose the largest (rule baseline_tuning_edge) and reached 0.978 at 20 epochs on seeds 100-104,
    # above the recipe's 0.974: so the target here, 0.975, is that better-tuned baseline's own final quality,
    # fixed from seeds 100-104 and judged on fresh seeds 200-204.
    "speedup": {
        "name": "speedup",
        "workload": "mnist1d",
        "arms": {"baseline": [], "recipe": {"recipe": "mnist1d-fast"}},
        "budgets": ["5ep", "10ep", "20ep"],
        "seeds": [200, 201, 202, 203, 204],
        "target": 0.975,
        "eval_interval": "0.1dur",
        "currency": "reference",
        "tuning": {"trials": 8, "budget": "10ep", "space": {"lr": {"log": [1e-3, 1e-1]}}},
    },
}


def preset(name: str) -> dict[str, Any]:
    try:
        return PRESETS[name]
    except KeyError:
        raise UsageError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}") from None

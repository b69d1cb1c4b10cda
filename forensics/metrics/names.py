"""The names trainers give the same metric (HF Trainer, TRL, W&B `train/` prefixes, plain
`lr`), in one table: health rules and timeline views look metrics up through it."""

from __future__ import annotations

from collections.abc import Iterable

#: canonical name -> every spelling, most common first
ALIASES: dict[str, tuple[str, ...]] = {
    "loss": ("loss", "train/loss", "train_loss"),
    "grad_norm": ("grad_norm", "train/grad_norm"),
    "learning_rate": ("learning_rate", "train/learning_rate", "lr"),
    "eval_loss": ("eval_loss", "eval/loss"),
    "reward": ("reward", "train/reward"),
    "reward_std": ("reward_std", "train/reward_std"),
    "entropy": ("entropy", "train/entropy"),
    "kl": ("kl", "train/kl"),
    "completions/mean_length": ("completions/mean_length", "train/completions/mean_length"),
}


def spellings(canonical: str) -> tuple[str, ...]:
    """Every name a metric is logged under."""
    return ALIASES.get(canonical, (canonical,))


def column(columns: Iterable[str], canonical: str) -> str | None:
    """The column that holds a metric, whichever spelling the log used."""
    present = set(columns)
    return next((name for name in spellings(canonical) if name in present), None)

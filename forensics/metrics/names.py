"""The names trainers give the same metric (HF Trainer, TRL, W&B `train/` prefixes, plain
`lr`), in one table: health rules and timeline views look metrics up through it."""

from __future__ import annotations

import re
from collections.abc import Iterable

#: canonical name -> every spelling, most common first
ALIASES: dict[str, tuple[str, ...]] = {
    # HF Trainer/TRL, W&B prefixes, Megatron-LM (`lm loss`), verl (`actor/...`, `critic/...`),
    # OpenRLHF
    # (PPO's policy loss: OpenRLHF, verl)
    "loss": ("loss", "train/loss", "train_loss", "lm loss", "reduced_train_loss",
             "train_loss_step", "policy_loss", "actor/pg_loss"),
    "grad_norm": ("grad_norm", "train/grad_norm", "grad norm", "actor/grad_norm"),
    "learning_rate": ("learning_rate", "train/learning_rate", "lr", "learning rate",
                      "actor/lr"),
    "eval_loss": ("eval_loss", "eval/loss"),
    "reward": ("reward", "train/reward", "critic/score/mean"),
    "reward_std": ("reward_std", "train/reward_std", "critic/score/std"),
    "entropy": ("entropy", "train/entropy", "actor/entropy"),
    "kl": ("kl", "train/kl", "actor/kl_loss"),
    "completions/mean_length": ("completions/mean_length", "train/completions/mean_length",
                                "response_length/mean", "response_length"),
}


def spellings(canonical: str) -> tuple[str, ...]:
    """Every name a metric is logged under."""
    return ALIASES.get(canonical, (canonical,))


def column(columns: Iterable[str], canonical: str) -> str | None:
    """The column that holds a metric, whichever spelling the log used."""
    present = set(columns)
    return next((name for name in spellings(canonical) if name in present), None)


def named_like(column: str, canonical: str) -> bool:
    """Whether a name an emitter chose spells a canonical metric in its words (`avr_loss`,
    `loss_total` and `actor/pg_loss` are losses, `loss_scale` is not; `clip/grad_norm` is a
    gradient norm)."""
    words = re.split(r"[/_. ]+", column.lower())
    wanted = canonical.split("_")
    return "scale" not in words and any(words[i:i + len(wanted)] == wanted
                                        for i in range(len(words) - len(wanted) + 1))

"""Metric lines that are not Python dicts, one registry entry per emitter: Megatron-LM's
`iteration N/ M | lm loss: ... |` (and NeMo 2's, behind its epoch), DeepSpeed's `step=N,
skipped=K, lr=[...]` and memory lines, torchtitan's `step: N  loss: ...  grad_norm: ...`, verl's
`step:N - actor/entropy:... - critic/score/mean:...`, nanoGPT's `iter N: loss X`, `step=N
loss=X` key=value lines, the postfix of a Lightning, OpenRLHF or any other bar that shows a
loss, and JSON-lines metric files. Each entry says which literals flag its lines, where a
record starts and what its step is, how its pairs read, and carries real lines from public
logs with the record each must give (`tests/test_lineshapes.py` runs them all). Metric
names stay as the emitter wrote them; `metrics.names` knows which canonical metric each one
is; a shape only one stack prints names that stack (its fixes are then given in its keys).
Printed Python dicts (HF Trainer, TRL, axolotl) have their own fast reader,
`metrics.table`; metric files read whole (trainer_state.json, wandb-summary.json,
Lightning's metrics.csv) are `metrics.fileshapes`."""

from __future__ import annotations

from dataclasses import dataclass

import regex

from forensics.metrics.table import STEP_KEYS

#: the record's own bookkeeping, not metrics (W&B's `_step`, `_runtime` start with `_`)
SKIPPED_KEYS = STEP_KEYS | {"iteration", "v_num"}
_NUMBER = r"[-+]?(?:\d[\d,]*(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|nan|NaN|-?inf|-?Inf"
#: one `| key: value |` of Megatron-LM's iteration line (and NeMo 2's)
_PIPE_PAIR = regex.compile(
    rf"\|\s*(?P<key>[A-Za-z][\w ./()-]{{0,60}}?):\s+(?P<value>{_NUMBER})\s*(?=\||$)")
#: one `key=value` of a tqdm bar's postfix (`[02:15<02:45,  3.33it/s, loss=0.512, lr=1e-05]`)
_POSTFIX_PAIR = regex.compile(
    rf"(?<=[ ,])(?P<key>[A-Za-z_][\w/.@]{{0,60}})=(?P<value>{_NUMBER})(?=[,\]])")


@dataclass(frozen=True)
class LineShape:
    """One emitter's metric line: the literals that flag it (the line pass's prefilter), the
    record's start with its step (and total steps, where printed), and one key/value pair."""

    name: str
    keywords: tuple[str, ...]
    record: regex.Pattern[str]
    pair: regex.Pattern[str]
    #: real lines and the (step, values) each gives
    examples: tuple[tuple[str, int, dict[str, float]], ...]
    counterexamples: tuple[str, ...] = ()  # look-alikes that are no record
    needs: tuple[str, ...] = ()  # a record must hold a key containing one (generic shapes)
    #: the first epoch's number in `epoch` (a bar's postfix step: epoch x batches + batch)
    first_epoch: int = 0
    #: a step drawn again keeps its first record (a bar whose postfix is set before it moves
    #: on, so that the next step's values are drawn at this step's position); otherwise later
    #: lines of the same step add to it (a redrawn bar, DeepSpeed's step and memory lines)
    keeps_first: bool = False
    stack: str = ""  # the stack (forensics/stacks.toml) that prints this shape, if only one

    def read(self, body: str) -> tuple[int, int | None, dict[str, float | None]] | None:
        """The record a line holds: its step, its total steps (or None) and its values. The
        step is the record's `step` group, else a `global_step` it logs, else (a bar's
        postfix) epoch x batches per epoch + batch."""
        start = self.record.search(body)
        if start is None:
            return None
        logged: dict[str, float] = {}
        for pair in self.pair.finditer(body, start.start()):
            if (value := _number(pair["value"])) is not None:
                logged[" ".join(pair["key"].split())] = value
        values: dict[str, float | None] = {k: v for k, v in logged.items()
                                           if k not in SKIPPED_KEYS and not k.startswith("_")}
        if not values or (self.needs and not any(n in key for key in values for n in self.needs)):
            return None
        found = start.groupdict()
        if found.get("step"):
            step = int(found["step"])
        elif "global_step" in logged:
            step = int(logged["global_step"])
        else:
            epoch = int(found["epoch"]) - self.first_epoch
            step = epoch * int(found["batches"]) + int(found["batch"])
        return step, int(found["total"]) if found.get("total") else None, values


def _number(raw: str) -> float | None:
    try:
        return float(raw.replace(",", ""))
    except ValueError:
        return None


SHAPES = (
    LineShape(
        # NeMo 2 prints Megatron's shape behind its own epoch prefix
        "nemo", ("Training epoch ",),
        regex.compile(r"\bTraining epoch \d+, iteration\s+(?P<step>\d+)\s*/\s*(?P<total>\d+)\s*\|"),
        _PIPE_PAIR,
        (("Training epoch 0, iteration 10/99 | lr: 1.5e-05 | global_batch_size: 8 | global_step: "
          "10 | reduced_train_loss: 9.553 | train_step_timing in s: 0.4312 | consumed_samples: 88",
          10, {"lr": 1.5e-05, "global_batch_size": 8.0, "reduced_train_loss": 9.553,
               "train_step_timing in s": 0.4312, "consumed_samples": 88.0}),),
        ("Training epoch 0, iteration 0/99 | sanity check done",), stack="nemo"),
    LineShape(
        "megatron", ("iteration ",),
        regex.compile(r"\biteration\s+(?P<step>\d+)\s*/\s*(?P<total>\d+)\s*\|"),
        _PIPE_PAIR,
        ((" iteration     6502/  159576 | consumed samples:       216960 | consumed tokens:    "
          "444334080 | elapsed time per iteration (ms): 31074.1 | learning rate: 5.997E-05 | "
          "global batch size:    80 | lm loss: 3.876781E+00 | loss scale: 4096.0 | grad norm: "
          "3246.595 | num zeros: 0.0 | number of skipped iterations:   0 | number of nan "
          "iterations:   0 |", 6502,
          {"consumed samples": 216960.0, "consumed tokens": 444334080.0,
           "elapsed time per iteration (ms)": 31074.1, "learning rate": 5.997e-05,
           "global batch size": 80.0, "lm loss": 3.876781, "loss scale": 4096.0,
           "grad norm": 3246.595, "num zeros": 0.0, "number of skipped iterations": 0.0,
           "number of nan iterations": 0.0}),),
        (" > finished iteration 100/ 500 of the data loader warm-up | rank 0",), stack="megatron"),
    LineShape(
        # engine.py's progress report, every steps_per_print steps (formats.md section 7)
        "deepspeed-step", ("skipped=",),
        regex.compile(r"\bstep=(?P<step>\d+), skipped=\d+, lr=\["),
        regex.compile(rf"\b(?P<key>skipped|lr)=\[?(?P<value>{_NUMBER})(?=[,\]])"),
        (("[2023-11-07 01:55:23,711] [INFO] [logging.py:96:log_dist] [Rank 0] step=10, "
          "skipped=4, lr=[4.99804827338393e-05, 4.99804827338393e-05], mom=[(0.9, 0.95), "
          "(0.9, 0.95)]", 10, {"skipped": 4.0, "lr": 4.99804827338393e-05}),),
        ("[INFO] [config.py:1000:print] steps_per_print .............. 10 skipped=0",),
        stack="deepspeed"),
    LineShape(
        # the ThroughputTimer's line, printed with it
        "deepspeed-memory", ("MaxMemAllocated=",),
        regex.compile(r"\bglobal_step=(?P<step>\d+), "),
        regex.compile(rf"\b(?P<key>\w+)=(?P<value>{_NUMBER})(?:GB)?(?=[,\s]|$)"),
        (("[2023-11-07 01:55:23,714] [INFO] [timer.py:260:stop] epoch=0/micro_step=40/"
          "global_step=10, RunningAvgSamplesPerSec=25.02, CurrSamplesPerSec=25.70, "
          "MemAllocated=4.32GB, MaxMemAllocated=38.49GB", 10,
          {"RunningAvgSamplesPerSec": 25.02, "CurrSamplesPerSec": 25.7, "MemAllocated": 4.32,
           "MaxMemAllocated": 38.49}),),
        ("|  0  MaxMemAllocated=38.49GB  (a table's cell, no step)",), stack="deepspeed"),
    LineShape(
        "torchtitan", ("  loss: ",),
        regex.compile(r"\bstep:\s*(?P<step>\d+)\s+loss:"),
        regex.compile(rf"(?P<key>[a-z_]+):\s+(?P<value>{_NUMBER})"),
        (("[rank0]:[titan] 2026-05-18 16:04:46,338 - root - INFO - step: 14  loss:  3.24405  "
          "grad_norm:  0.8319  memory:  9.46GiB(64.99%)  tps: 7,282  tflops: 0.52  mfu: 0.17%",
          14, {"loss": 3.24405, "grad_norm": 0.8319, "memory": 9.46, "tps": 7282.0,
               "tflops": 0.52, "mfu": 0.17}),),
        ("  loss: cross_entropy  # job config [training] section, step: 0",),
        stack="torchtitan"),
    LineShape(
        "verl", ("step:",),
        regex.compile(r"(?:^|\s)step:(?P<step>\d+) - "),
        regex.compile(rf"(?:^|\s|- )(?P<key>[A-Za-z][\w/@.()-]{{0,80}}):(?P<value>{_NUMBER})"
                      r"(?=\s|$)"),
        (("(TaskRunner pid=222265) step:34 - global_seqlen/min:419336 - actor/entropy:"
          "0.2226657867 - actor/pg_loss:-0.005 - actor/grad_norm:1.992 - critic/score/mean:"
          "0.004 - response_length/mean:512.5", 34,
          {"global_seqlen/min": 419336.0, "actor/entropy": 0.2226657867,
           "actor/pg_loss": -0.005, "actor/grad_norm": 1.992, "critic/score/mean": 0.004,
           "response_length/mean": 512.5}),),
        ("(TaskRunner pid=1) step:0 - starting validation before training",), stack="verl"),
    LineShape(
        "nanogpt", ("iter ",),
        regex.compile(r"^iter (?P<step>\d+): loss "),
        regex.compile(rf"(?:^iter \d+: |, )(?P<key>[a-z_]+) (?P<value>{_NUMBER})"),
        (("iter 5: loss 4.2082, time 1431.27ms, mfu 0.01%", 5,
          {"loss": 4.2082, "time": 1431.27, "mfu": 0.01}),),
        ("max_iters 5000: loss is evaluated every 250 iterations",)),
    LineShape(
        "key=value", ("loss=",),
        regex.compile(r"(?i)\b(?:global_)?step\s*[=:]?\s*(?P<step>\d+)\b"),
        regex.compile(rf"(?P<key>[A-Za-z][\w/.]{{0,60}})=(?P<value>{_NUMBER})(?=[\s,;|)]|$)"),
        (("Step 1200: grad_norm=1.83, loss=2.3114, lr=2.5e-05", 1200,
          {"grad_norm": 1.83, "loss": 2.3114, "lr": 2.5e-05}),),
        ("Namespace(batch_size=8, loss=mse, lr=0.001, max_steps=1000, step_size=30)",),
        needs=("loss",)),
    LineShape(
        # Lightning's bar (and NeMo 1's, which is Lightning's) carries the metrics in its
        # postfix; it is redrawn several times a step, and the line pass keeps the last
        "lightning-bar", ("it/s, ", "s/it, "),
        regex.compile(r"^Epoch (?P<epoch>\d+):\s+\d+%\|[^|]*\|\s*(?P<batch>\d+)/(?P<batches>\d+) "
                      r"\[[^\]]*?(?:it/s|s/it), "),
        _POSTFIX_PAIR,
        (("Epoch 0:  31%|███       | 1222/3999 [1:05:55<2:29:48,  3.24s/it, v_num=29, "
          "train_intent_loss_step=1.000, train_total_loss=-.229]", 1222,
          {"train_intent_loss_step": 1.0, "train_total_loss": -0.229}),
         ("Epoch 0:   6%|██                               | 32040/500150 [6:28:43<94:39:17,  "
          "1.37it/s, loss=2.6, v_num=95nc, reduced_train_loss=2.590, global_step=3.2e+4, "
          "consumed_samples=2.56e+7]", 32000,
          {"loss": 2.6, "reduced_train_loss": 2.59, "consumed_samples": 2.56e7}),
         ("Epoch 2:  50%|█████     | 50/100 [00:30<00:30,  1.65it/s, v_num=3, train_loss=0.512]",
          250, {"train_loss": 0.512})),
        ("Epoch 2:  50%|█████     | 50/100 [00:30<00:30,  1.65it/s, v_num=3]",),
        needs=("loss",), stack="lightning"),
    LineShape(
        # OpenRLHF's PPO/GRPO episode bar: its postfix, set once a rollout batch has trained,
        # holds the mean status (policy_loss, kl, reward, ...); the bar counts rollout
        # batches, and the postfix is set before the bar moves on, so a position's first draw
        # holds its own batch's values
        "openrlhf", ("it/s, ", "s/it, "),
        regex.compile(r"(?:^|\s)Episode \[(?P<epoch>\d+)/\d+\]:\s+\d+%\|[^|]*\|\s*(?P<batch>\d+)/"
                      r"(?P<batches>\d+) \[[^\]]*?(?:it/s|s/it), "),
        _POSTFIX_PAIR,
        (("Episode [1/1]:  24%|██▍       | 2431/10050 [12:59:12<20:32:20,  9.70s/it, "
          "policy_loss=0.0432, kl=0.0387, reward=0.827, return=0.767, response_length=164, "
          "total_length=200, critic_loss=0.0235, values=0.614]", 2431,
          {"policy_loss": 0.0432, "kl": 0.0387, "reward": 0.827, "return": 0.767,
           "response_length": 164.0, "total_length": 200.0, "critic_loss": 0.0235,
           "values": 0.614}),),
        ("Episode [1/1]:   0%|          | 0/625 [00:00<?, ?it/s]",
         "Train epoch [1/1]:  50%|█████     | 2/4 [00:05<00:05,  2.50s/it, pg=0.0123, rm=0.5, "
         "kl=0.001, act_lr=5e-7]"),
        needs=("loss", "reward", "kl"), first_epoch=1, keeps_first=True, stack="openrlhf"),
    LineShape(
        # any other tqdm bar whose postfix holds a loss (kohya sd-scripts' and musubi-tuner's
        # `steps:` bar, a hand-written loop's): its position is the step, its postfix set
        # after the bar moved on; an evaluation bar's is no training record
        "bar-postfix", ("it/s, ", "s/it, "),
        regex.compile(r"(?:^|\r)(?!(?i:[^|\r\n]{0,60}?(?:eval|valid|test)))[^|\r\n]{0,60}?"
                      r"\d+%\|[^|\r\n]*\|\s*(?P<step>\d+)/\d+ \[[^\]]*?(?:it/s|s/it), "),
        _POSTFIX_PAIR,
        (("steps:  10%|██████                                                      | 780/7800 "
          "[05:04<45:36,  2.57it/s, loss=0.117]", 780, {"loss": 0.117}),
         (" 45%|████▌     | 450/1000 [02:15<02:45,  3.33it/s, v_num=0, train_loss=0.512]", 450,
          {"train_loss": 0.512})),
        ("Evaluating:  50%|█████     | 5/10 [00:01<00:01,  4.10it/s, loss=0.52]",
         " 45%|████▌     | 450/1000 [02:15<02:45,  3.33it/s, lr=1e-05]"),
        needs=("loss",)),
    LineShape(
        "json-lines", ('"step": ', '"_step": ', '"global_step": ', '"iteration": '),
        regex.compile(r'^\{.*?"(?:train/global_step|global_step|step|iteration|_step)": '
                      r"(?P<step>\d+)\b"),
        regex.compile(rf'"(?P<key>[^"\\]{{1,80}})": (?P<value>{_NUMBER})(?=[,}}\s])'),
        (('{"train/loss": 2.3421, "train/grad_norm": 1.25, "train/learning_rate": 1.9e-05, '
          '"train/epoch": 0.05, "train/global_step": 10, "_timestamp": 1718000000.1, '
          '"_runtime": 120.5, "_step": 9}', 10,
          {"train/loss": 2.3421, "train/grad_norm": 1.25, "train/learning_rate": 1.9e-05,
           "train/epoch": 0.05}),
         ('{"step": 5000, "train/loss/con": 0.04, "train/loss/dyn": 5.41, "train/loss/image": '
          '61.08, "episode/score": 0.1}', 5000,
          {"train/loss/con": 0.04, "train/loss/dyn": 5.41, "train/loss/image": 61.08,
           "episode/score": 0.1})),
        ('{"level": "info", "step": 3, "pid": 4242, "msg": "loading shards"}',),
        needs=("loss", "reward", "grad_norm")),
)
KEYWORDS = tuple(dict.fromkeys(k for shape in SHAPES for k in shape.keywords))

#: printed Python dicts, read by `MetricsTable.add_printed` (any keys; its step is the training
#: bar's): each variant's real shape (formats.md section 2) and the record kind and values it
#: gives
PRINTED_DICTS: tuple[tuple[str, str, str, dict[str, float]], ...] = (
    ("hf-trainer", "{'loss': 1.2345, 'grad_norm': 0.5, 'learning_rate': 2e-05, 'epoch': 0.6}",
     "train", {"loss": 1.2345, "grad_norm": 0.5, "learning_rate": 2e-05, "epoch": 0.6}),
    ("hf-trainer-strings", "{'loss': '2.345', 'grad_norm': '1.234', 'learning_rate': "
     "'1.96e-05', 'epoch': '0.04'}", "train",
     {"loss": 2.345, "grad_norm": 1.234, "learning_rate": 1.96e-05, "epoch": 0.04}),
    ("hf-eval", "{'eval_loss': 1.234, 'eval_runtime': 12.3456, 'eval_samples_per_second': "
     "81.0, 'eval_steps_per_second': 10.125, 'epoch': 1.0}", "eval",
     {"eval_loss": 1.234, "eval_runtime": 12.3456, "eval_samples_per_second": 81.0,
      "eval_steps_per_second": 10.125, "epoch": 1.0}),
    ("hf-summary", "{'train_runtime': 123.4567, 'train_samples_per_second': 12.345, "
     "'train_steps_per_second': 0.772, 'train_loss': 1.2345678901, 'epoch': 3.0}", "summary",
     {"train_runtime": 123.4567, "train_samples_per_second": 12.345,
      "train_steps_per_second": 0.772, "train_loss": 1.2345678901, "epoch": 3.0}),
    ("trl-grpo", "{'loss': 0.0002, 'grad_norm': 0.0005825, 'learning_rate': 3.785e-06, "
     "'rewards/reward_fn/mean': 0.4647, 'reward_std': 0.0, 'frac_reward_zero_std': 1.0, 'kl': "
     "0.1723, 'epoch': 0.85}", "train",
     {"loss": 0.0002, "grad_norm": 0.0005825, "learning_rate": 3.785e-06,
      "rewards/reward_fn/mean": 0.4647, "reward_std": 0.0, "frac_reward_zero_std": 1.0,
      "kl": 0.1723, "epoch": 0.85}),
    ("axolotl", "{'loss': 1.0318, 'grad_norm': 0.4171, 'learning_rate': 1.6e-05, "
     "'memory/max_active (GiB)': 18.42, 'memory/max_allocated (GiB)': 18.42, "
     "'memory/device_reserved (GiB)': 21.3, 'tokens_per_second_per_gpu': 2931.2, 'epoch': 0.5}",
     "train", {"loss": 1.0318, "grad_norm": 0.4171, "learning_rate": 1.6e-05,
               "memory/max_active (GiB)": 18.42, "memory/max_allocated (GiB)": 18.42,
               "memory/device_reserved (GiB)": 21.3, "tokens_per_second_per_gpu": 2931.2,
               "epoch": 0.5}),
)


def line_record(body: str) -> tuple[LineShape, int, int | None, dict[str, float | None]] | None:
    """The first shape that reads the line, and its record (step, total steps, values)."""
    for shape in SHAPES:
        if any(k in body for k in shape.keywords) and (found := shape.read(body)) is not None:
            return shape, *found
    return None

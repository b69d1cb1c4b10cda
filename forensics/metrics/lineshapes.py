"""Metric lines that are not Python dicts, one registry entry per emitter: Megatron-LM's
`iteration N/ M | lm loss: ... |`, torchtitan's `step: N  loss: ...  grad_norm: ...`,
verl's `step:N - actor/entropy:... - critic/score/mean:...`, nanoGPT's `iter N: loss X`
and `step=N loss=X` key=value lines. Each entry says which literals flag its lines, where a
record starts and what its step is, how its pairs read, and carries real lines from public
logs with the record each must give (`tests/test_lineshapes.py` runs them all). Metric names
stay as the emitter wrote them; `metrics.names` knows which canonical metric each one is."""

from __future__ import annotations

from dataclasses import dataclass

import regex

#: the record's own bookkeeping, not metrics (W&B's `_step`, `_runtime` start with `_`)
SKIPPED_KEYS = frozenset({"step", "global_step", "train/global_step", "iteration", "v_num"})
_NUMBER = r"[-+]?(?:\d[\d,]*(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|nan|NaN|-?inf|-?Inf"


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
            step = int(found["epoch"]) * int(found["batches"]) + int(found["batch"])
        return step, int(found["total"]) if found.get("total") else None, values


def _number(raw: str) -> float | None:
    try:
        return float(raw.replace(",", ""))
    except ValueError:
        return None


SHAPES = (
    LineShape(
        "megatron", ("iteration ",),
        regex.compile(r"\biteration\s+(?P<step>\d+)\s*/\s*(?P<total>\d+)\s*\|"),
        regex.compile(rf"\|\s*(?P<key>[A-Za-z][\w ./()-]{{0,60}}?):\s+(?P<value>{_NUMBER})\s*"
                      r"(?=\||$)"),
        ((" iteration     6502/  159576 | consumed samples:       216960 | consumed tokens:    "
          "444334080 | elapsed time per iteration (ms): 31074.1 | learning rate: 5.997E-05 | "
          "global batch size:    80 | lm loss: 3.876781E+00 | loss scale: 4096.0 | grad norm: "
          "3246.595 | num zeros: 0.0 | number of skipped iterations:   0 | number of nan "
          "iterations:   0 |", 6502,
          {"consumed samples": 216960.0, "consumed tokens": 444334080.0,
           "elapsed time per iteration (ms)": 31074.1, "learning rate": 5.997e-05,
           "global batch size": 80.0, "lm loss": 3.876781, "loss scale": 4096.0,
           "grad norm": 3246.595, "num zeros": 0.0, "number of skipped iterations": 0.0,
           "number of nan iterations": 0.0}),
         # NeMo 2 prints the same shape
         ("Training epoch 0, iteration 10/99 | lr: 1.5e-05 | global_batch_size: 8 | global_step: "
          "10 | reduced_train_loss: 9.553 | train_step_timing in s: 0.4312 | consumed_samples: 88",
          10, {"lr": 1.5e-05, "global_batch_size": 8.0, "reduced_train_loss": 9.553,
               "train_step_timing in s": 0.4312, "consumed_samples": 88.0})),
        (" > finished iteration 100/ 500 of the data loader warm-up | rank 0",)),
    LineShape(
        "torchtitan", ("  loss: ",),
        regex.compile(r"\bstep:\s*(?P<step>\d+)\s+loss:"),
        regex.compile(rf"(?P<key>[a-z_]+):\s+(?P<value>{_NUMBER})"),
        (("[rank0]:[titan] 2026-05-18 16:04:46,338 - root - INFO - step: 14  loss:  3.24405  "
          "grad_norm:  0.8319  memory:  9.46GiB(64.99%)  tps: 7,282  tflops: 0.52  mfu: 0.17%",
          14, {"loss": 3.24405, "grad_norm": 0.8319, "memory": 9.46, "tps": 7282.0,
               "tflops": 0.52, "mfu": 0.17}),),
        ("  loss: cross_entropy  # job config [training] section, step: 0",)),
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
        ("(TaskRunner pid=1) step:0 - starting validation before training",)),
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
        regex.compile(rf"(?<=[ ,])(?P<key>[A-Za-z_][\w/.]{{0,60}})=(?P<value>{_NUMBER})(?=[,\]])"),
        (("Epoch 0:  31%|███       | 1222/3999 [1:05:55<2:29:48,  3.24s/it, v_num=29, "
          "train_intent_loss_step=1.000, train_total_loss=-.229]", 1222,
          {"train_intent_loss_step": 1.0, "train_total_loss": -0.229}),
         ("Epoch 0:   6%|██                               | 32040/500150 [6:28:43<94:39:17,  "
          "1.37it/s, loss=2.6, v_num=95nc, reduced_train_loss=2.590, global_step=3.2e+4, "
          "consumed_samples=2.56e+7]", 32000,
          {"loss": 2.6, "reduced_train_loss": 2.59, "consumed_samples": 2.56e7}),
         ("Epoch 2:  50%|█████     | 50/100 [00:30<00:30,  1.65it/s, v_num=3, train_loss=0.512]",
          250, {"train_loss": 0.512})),
        (" 45%|████▌     | 450/1000 [02:15<02:45,  3.33it/s, v_num=0, train_loss=0.512]",),
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


def line_record(body: str) -> tuple[int, int | None, dict[str, float | None]] | None:
    """The record of the first shape that reads the line, or None."""
    for shape in SHAPES:
        if any(k in body for k in shape.keywords) and (found := shape.read(body)) is not None:
            return found
    return None

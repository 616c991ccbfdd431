"""Differential tests: the evaluator's numbers equal the reference libraries' own evaluation
on the same model and rows (issue 18).

Tolerances (float32 on CPU; the same operations in a different order):
- instruct vs ``transformers.Trainer.evaluate`` (whole split in one eval batch): 1e-5 relative;
- DPO vs ``trl.DPOTrainer.evaluate`` (sigmoid, beta 0.1, reference = base): 1e-5 absolute;
- GRPO vs TRL's generation and reward path with the same seed: identical completions and
  reward means within 1e-6; TRL's sampling settings equal the evaluator's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import submissions as subs
from conftest import DPO_COLUMNS, INS_COLUMNS, Data, evaluate

from gradients_trainer.contract import TaskType
from gradients_trainer.data import load_text_split, parse_columns


@pytest.fixture(scope="module")
def full(text_base: Path, workdir: Path) -> Path:
    return subs.full_finetune(text_base, workdir / "ref_full")


def hf_args(tmp: Path, **kw: Any) -> dict[str, Any]:
    return dict(output_dir=str(tmp), report_to=[], use_cpu=True, bf16=False, disable_tqdm=True,
                remove_unused_columns=False, **kw)


def test_instruct_equals_the_trainers_eval_loss(data: Data, text_base: Path, full: Path, tmp_path: Path) -> None:
    from transformers import Trainer, TrainingArguments

    from gradients_trainer.modelio import load_causal_lm, load_tokenizer
    from gradients_trainer.sft import Collator, ListDataset
    from gradients_trainer.textrules import instruct_example, keep_within, window_of

    ours = evaluate("instruct", text_base, full, data.ins_test, data.ins_synth, "--columns", INS_COLUMNS)
    assert ours["ok"] is True, ours
    tok = load_tokenizer(text_base)
    rows = load_text_split(TaskType.INSTRUCT, data.ins_test, parse_columns(TaskType.INSTRUCT, INS_COLUMNS), "t")
    window = window_of(json.loads((text_base / "config.json").read_text()))
    items = keep_within([instruct_example(tok, r.prompt, r.completion) for r in rows], window)
    trainer = Trainer(model=load_causal_lm(full),
                      args=TrainingArguments(**hf_args(tmp_path, per_device_eval_batch_size=len(items))),
                      eval_dataset=ListDataset(items), data_collator=Collator(int(tok.pad_token_id)))
    reference = trainer.evaluate()["eval_loss"]
    assert ours["test_loss"] == pytest.approx(reference, rel=1e-5)


def test_dpo_equals_trl_dpo_evaluate(data: Data, text_base: Path, full: Path, tmp_path: Path) -> None:
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from gradients_trainer.modelio import load_causal_lm, load_tokenizer

    ours = evaluate("dpo", text_base, full, data.dpo_test, data.dpo_synth, "--columns", DPO_COLUMNS)
    assert ours["ok"] is True, ours
    rows = load_text_split(TaskType.DPO, data.dpo_test, parse_columns(TaskType.DPO, DPO_COLUMNS), "t")
    ds = Dataset.from_list([{"prompt": r.prompt, "chosen": r.chosen, "rejected": r.rejected} for r in rows])
    args = DPOConfig(**hf_args(tmp_path, per_device_eval_batch_size=4), beta=0.1, loss_type=["sigmoid"],
                     max_length=None, dataset_num_proc=None)
    trainer = DPOTrainer(model=load_causal_lm(full), ref_model=load_causal_lm(text_base), args=args,
                         train_dataset=ds, eval_dataset=ds, processing_class=load_tokenizer(text_base))
    reference = trainer.evaluate()["eval_loss"]
    assert ours["test_loss"] == pytest.approx(reference, abs=1e-5)
    # The tiny tokenizer prepends BOS (like Llama's) and TRL 1 keeps it: a test that sees it.
    assert load_tokenizer(text_base)("x")["input_ids"][0] == load_tokenizer(text_base).bos_token_id


MAYBE_NONE = (
    "def count_a_or_none(completions, **kwargs):\n"
    "    return [None if len(c) % 3 == 0 else c.count('a') / max(1, len(c)) for c in completions]\n"
)


def test_grpo_sampling_settings_are_trls(text_base: Path, tmp_path: Path) -> None:
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from gradients_trainer.evaluate import grpo as grpo_eval
    from gradients_trainer.modelio import load_causal_lm, load_tokenizer

    tok = load_tokenizer(text_base)
    # 256 new tokens: the public validator's setting (TRL 0.x's default; TRL 1's is 512).
    args = GRPOConfig(**hf_args(tmp_path), num_generations=2, per_device_train_batch_size=2,
                      max_completion_length=256)
    model = load_causal_lm(text_base)
    model.generation_config.eos_token_id = [7, tok.eos_token_id]  # an end-of-turn id too
    eos_ids = grpo_eval.eos_token_ids(tok, model)
    trainer = GRPOTrainer(model=model, reward_funcs=[lambda completions, **k: [0.0] * len(completions)],
                          args=args, train_dataset=Dataset.from_list([{"prompt": "a"}] * 2), processing_class=tok)
    ours = grpo_eval.generation_config(tok, grpo_eval.PRODUCTION, eos_ids).to_dict()
    assert eos_ids == [7, tok.eos_token_id] == trainer.eos_token_ids
    assert ours == trainer.generation_config.to_dict()
    assert (args.max_completion_length, args.temperature) == (256, 1.0)


def test_grpo_equals_trl_reward_path_with_a_fixed_seed(data: Data, text_base: Path, full: Path,
                                                       tmp_path: Path) -> None:
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer
    from trl.trainer.utils import RepeatSampler

    from gradients_trainer.evaluate import grpo as grpo_eval
    from gradients_trainer.modelio import load_causal_lm, load_tokenizer
    from gradients_trainer.sandbox import RewardSpec

    seed, gens = 42, 2
    rows = load_text_split(TaskType.GRPO, data.grpo_test, parse_columns(TaskType.GRPO, '{"prompt": "prompt"}'), "t")[:4]
    ds = Dataset.from_list([{"prompt": r.prompt} for r in rows])
    namespace: dict[str, Any] = {}
    exec(MAYBE_NONE, namespace)  # noqa: S102 - the test's own reward, run unsandboxed for TRL
    trl_reward = namespace["count_a_or_none"]
    tok = load_tokenizer(text_base)
    args = GRPOConfig(**hf_args(tmp_path, per_device_eval_batch_size=gens * len(rows),
                                per_device_train_batch_size=gens, seed=seed),
                      num_generations=gens, max_completion_length=32, beta=0.0)
    model = load_causal_lm(full)
    trainer = GRPOTrainer(model=model, reward_funcs=[trl_reward], args=args, train_dataset=ds,
                          eval_dataset=ds, processing_class=tok)
    # TRL's eval order is a seeded shuffle; seed torch the way the evaluator does for batch 0.
    order = list(RepeatSampler(ds, mini_repeat_count=gens, seed=seed))[::gens]
    generate = model.generate
    seen: list[Any] = []

    def seeded_generate(*a: Any, **kw: Any) -> Any:
        torch.manual_seed(seed)
        out = generate(*a, **kw)
        seen.append(out[:, kw["input_ids"].shape[1]:])
        return out

    model.generate = seeded_generate  # type: ignore[method-assign]
    metrics: dict[str, float] = {}

    class KeepLogs(TrainerCallback):  # type: ignore[misc]
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            metrics.update(logs or {})  # TRL adds its reward means to the logged metrics

    trainer.add_callback(KeepLogs())
    trainer.evaluate()
    model.generate = generate  # type: ignore[method-assign]
    assert len(seen) == 1

    spec = RewardSpec("count_a_or_none", MAYBE_NONE, 1.0)
    ordered = [rows[i] for i in order]
    sampling = grpo_eval.Sampling(max_new_tokens=32, generations=gens)
    ours = grpo_eval.grpo_score(model, tok, ordered, [spec], sampling, seed)
    completions = grpo_eval.generate(model, tok, [r.prompt for r in ordered], sampling, seed)
    eos_ids = grpo_eval.eos_token_ids(tok, model)
    assert completions == grpo_eval.decode_completions(tok, seen[0], eos_ids)  # the very same samples
    # Some rewards were None: ignored (TRL's nanmean), never a failure.
    assert any(len(c) % 3 == 0 for c in completions) and any(len(c) % 3 for c in completions)
    assert ours.rewards["count_a_or_none"] == pytest.approx(metrics["eval_rewards/count_a_or_none/mean"], abs=1e-6)
    assert ours.loss == pytest.approx(-metrics["eval_rewards/count_a_or_none/mean"], abs=1e-6)

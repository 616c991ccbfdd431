"""Nothing a submission ships besides its weights changes its score (issue 18).

Each manipulated submission scores exactly what the same weights score without the
manipulation, or is refused with the offending key named.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import submissions as subs
from conftest import INS_COLUMNS, Data, evaluate


@pytest.fixture(scope="module")
def full(text_base: Path, workdir: Path) -> Path:
    return subs.full_finetune(text_base, workdir / "manip_full")


@pytest.fixture(scope="module")
def lora(text_base: Path, workdir: Path) -> Path:
    return subs.lora(text_base, workdir / "manip_lora")


def ins(data: Data, base: Path, sub: Path) -> dict:
    return evaluate("instruct", base, sub, data.ins_test, data.ins_synth, "--columns", INS_COLUMNS)


def grpo(data: Data, base: Path, sub: Path) -> dict:
    return evaluate("grpo", base, sub, data.grpo_test, data.grpo_synth,
                    "--reward-functions", data.rewards, "--columns", '{"prompt": "prompt"}')


def scores(result: dict) -> tuple:
    assert result["ok"] is True, result
    return (result["test_loss"], result["synth_loss"], result.get("test_kl"), result.get("synth_kl"))


def refused(result: dict, check: str, words: str) -> None:
    assert result["ok"] is False and result["category"] == "submission", result
    bad = [c for c in result["checks"] if not c["ok"]]
    assert bad[-1]["name"] == check and words in bad[-1]["reason"], result


# A generation config that would win GRPO if it were followed: forced 'a's, nothing else.
def hostile_generation_config(vocab: int) -> str:
    return json.dumps({
        "do_sample": False, "temperature": 0.01, "max_new_tokens": 1,
        "suppress_tokens": [i for i in range(vocab) if i != 101],  # only byte 'a' (97 + 4)
        "sequence_bias": [[[101], 100.0]],
        "begin_suppress_tokens": [2], "repetition_penalty": 5.0,
    })


def test_grpo_ignores_a_shipped_generation_config(data: Data, text_base: Path, full: Path,
                                                  lora: Path, workdir: Path) -> None:
    vocab = json.loads((text_base / "config.json").read_text())["vocab_size"]
    for src in (full, lora):
        clean = scores(grpo(data, text_base, src))
        hostile = subs.variant(src, workdir / f"{src.name}_gencfg",
                               extra={"generation_config.json": hostile_generation_config(vocab)})
        assert scores(grpo(data, text_base, hostile)) == clean
    assert clean[2] is not None and clean[2] > 0  # a real KL against the base


def test_context_length_comes_from_the_base(data: Data, text_base: Path, full: Path, workdir: Path) -> None:
    clean = scores(ins(data, text_base, full))
    for edit in ({"max_position_embeddings": 1 << 16},
                 {"rope_theta": 1.0, "rope_scaling": {"rope_type": "linear", "factor": 8.0}},
                 {"torch_dtype": "float16", "use_cache": False, "tie_word_embeddings": True}):
        sub = subs.variant(full, workdir / "ctx_variant", edit)
        assert scores(ins(data, text_base, sub)) == clean, edit


def test_architecture_keys_must_match_the_base(data: Data, text_base: Path, full: Path, workdir: Path) -> None:
    sub = subs.variant(full, workdir / "arch_variant", {"num_hidden_layers": 4})
    refused(ins(data, text_base, sub), "architecture", "num_hidden_layers")
    sub = subs.variant(full, workdir / "automap_variant", {"auto_map": {"AutoModelForCausalLM": "evil.Model"}})
    refused(ins(data, text_base, sub), "no_remote_code", "auto_map")


@pytest.mark.parametrize(("edit", "words"), [
    ({"layer_replication": [[0, 2], [0, 2]]}, "layer_replication"),
    ({"modules_to_save": ["model.layers.0.mlp"]}, "not in the allow-list"),
    ({"peft_type": "PREFIX_TUNING"}, "peft_type"),
    ({"use_dora": "yes"}, "use_dora"),
    ({"layers_to_transform": [7]}, "layers_to_transform"),
    ({"trainable_token_indices": [1, 2]}, "trainable_token_indices"),
])
def test_adapter_config_outside_the_allow_list_is_refused(data: Data, text_base: Path, lora: Path,
                                                           workdir: Path, edit: dict, words: str) -> None:
    sub = subs.variant(lora, workdir / "adapter_variant", edit, config="adapter_config.json")
    refused(ins(data, text_base, sub), "adapter_config", words)


def test_adapter_settings_without_effect_are_neutralised(data: Data, text_base: Path, lora: Path,
                                                         workdir: Path) -> None:
    clean = scores(ins(data, text_base, lora))
    # PiSSA initialisation would rewrite the base weights; dropout and inference flags do nothing.
    edit = {"init_lora_weights": "pissa", "lora_dropout": 0.9, "inference_mode": False,
            "base_model_name_or_path": "/elsewhere", "megatron_core": "x"}
    sub = subs.variant(lora, workdir / "adapter_inert", edit, config="adapter_config.json")
    assert scores(ins(data, text_base, sub)) == clean


def test_whole_tensors_outside_modules_to_save_are_refused(data: Data, text_base: Path, lora: Path,
                                                           workdir: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    sub = subs.variant(lora, workdir / "smuggled_tensor")
    tensors = load_file(str(sub / "adapter_model.safetensors"))
    hidden = json.loads((text_base / "config.json").read_text())["hidden_size"]
    tensors["base_model.model.model.norm.weight"] = torch.full((hidden,), 3.0)
    save_file(tensors, str(sub / "adapter_model.safetensors"))
    refused(ins(data, text_base, sub), "adapter_config", "outside modules_to_save")


def test_shipped_tokenizer_and_index_are_ignored(data: Data, text_base: Path, full: Path,
                                                 workdir: Path) -> None:
    clean = scores(ins(data, text_base, full))
    extra = {"tokenizer.json": "{not json", "tokenizer_config.json": json.dumps({"add_bos_token": False}),
             "model.safetensors.index.json": json.dumps({"weight_map": {"lm_head.weight": "other.safetensors"}}),
             "chat_template.jinja": "{{ 'x' }}"}
    sub = subs.variant(full, workdir / "side_files", extra=extra)
    assert scores(ins(data, text_base, sub)) == clean


def test_is_fine_tune_is_decided_in_the_evaluation_dtype(text_base: Path, full: Path, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    from gradients_trainer import checks

    base_files = checks.base_weight_files(text_base)
    # A "fine-tune" that only moved weights within bfloat16 rounding: the base rounded to bf16.
    nudged = {k: v.to(torch.bfloat16).to(v.dtype) for k, v in load_file(str(base_files[0])).items()}
    save_file(nudged, str(tmp_path / "model.safetensors"))
    sub_files = [tmp_path / "model.safetensors"]
    # float32 sees the nudge; bfloat16 (the GPU evaluation dtype) rounds it back to the base.
    assert not checks.full_is_identical(sub_files, base_files, torch.float32)
    assert checks.full_is_identical(sub_files, base_files, torch.bfloat16)
    assert not checks.full_is_identical(checks.base_weight_files(full), base_files, torch.bfloat16)


def test_a_lora_that_vanishes_in_the_evaluation_dtype_is_not_a_fine_tune(lora: Path, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    from gradients_trainer import checks

    tensors = load_file(str(lora / "adapter_model.safetensors"))
    save_file({k: (torch.full_like(v, 1e-42) if "lora_B" in k else v) for k, v in tensors.items()},
              str(tmp_path / "adapter_model.safetensors"))
    files = [tmp_path / "adapter_model.safetensors"]
    assert not checks.lora_is_noop(files, torch.float32)  # a float32 subnormal…
    assert checks.lora_is_noop(files, torch.bfloat16)  # …is zero in bfloat16

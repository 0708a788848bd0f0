"""A variant of the tiny Llama whose output depends on its whole context.

tests/tiny_llama.py's tied, narrow random weights make the model repeat its last token forever,
so a wrong position id, mask or cache row would go unnoticed. Untied weights with a wide init
give text that changes with the context, at the same size and with the same tokenizer.
"""

from __future__ import annotations

import shutil
from pathlib import Path


def build_varied_llama(tiny_llama: Path, folder: Path, seed: int = 0) -> Path:
    """tiny_llama's tokenizer and shape, untied weights drawn with std 0.5, saved to `folder`.

    With seed 0 the greedy continuation of "Question: Janet's ducks lay 16 eggs" ends with EOS
    as its 28th token (the batched-generation tests rely on it).
    """
    import torch  # noqa: PLC0415 - heavy: conftest imports this module in every session
    from transformers import AutoConfig, LlamaForCausalLM  # noqa: PLC0415 - heavy: as torch

    folder.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(tiny_llama / name, folder / name)
    config = AutoConfig.from_pretrained(tiny_llama)
    config.tie_word_embeddings = False
    config.initializer_range = 0.5
    torch.manual_seed(seed)
    LlamaForCausalLM(config).to(torch.float32).save_pretrained(folder, safe_serialization=True)
    return folder

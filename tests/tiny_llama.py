"""A tiny random-weight Llama with a freshly trained BPE tokenizer: fast unit tests, no download."""

from __future__ import annotations

import shutil
from pathlib import Path

_CORPUS = [
    "The following are multiple choice questions (with answers) about abstract algebra.",
    "Question: Janet's ducks lay 16 eggs per day. How much does she make? Answer: #### 18",
    "def add(a, b):\n    return a + b\n\nassert add(2, 3) == 5\n",
    "You are an expert Python programmer, and here is your task: [BEGIN] code [DONE]",
    "A. one\nB. two\nC. three\nD. four\nAnswer: A B C D (A) (B) (C) (E)",
    "대한민국의 수도는 서울이다. 정답： 다음 중 옳은 것은? 한국어 문장입니다.",
    "0123456789 +-*/=<>()[]{}:;,.!?'\"#$%&@^_`|~",
]


def build_tiny_llama(folder: Path, seed: int = 0) -> Path:
    """Write config, random weights and tokenizer into `folder` (a plain HF model folder)."""
    import torch  # noqa: PLC0415 - heavy: conftest imports this module in every session
    from tokenizers import (  # noqa: PLC0415 - heavy: as torch
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        trainers,
    )
    from transformers import (  # noqa: PLC0415 - heavy: as torch
        LlamaConfig,
        LlamaForCausalLM,
        PreTrainedTokenizerFast,
    )

    folder.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 20, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>",
                                   bos_token="<|endoftext|>", pad_token="<|endoftext|>")
    fast.save_pretrained(folder)

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=4096,
        bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id, tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config).to(torch.float32)
    model.save_pretrained(folder, safe_serialization=True)
    return folder


CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|endoftext|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def with_chat_template(source: Path, folder: Path) -> Path:
    """A copy of a tiny Llama folder whose tokenizer has a chat template (instruct protocol)."""
    from transformers import AutoTokenizer  # noqa: PLC0415 - heavy: as in build_tiny_llama

    shutil.copytree(source, folder, dirs_exist_ok=True)
    tok = AutoTokenizer.from_pretrained(folder)
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(folder)
    return folder

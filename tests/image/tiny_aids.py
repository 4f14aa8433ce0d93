"""Tiny random models for the generation aids, written with ``save_pretrained`` without any download: an
instruct LLM with a chat template (prompt optimizer) and a ViT classifier labelled normal/nsfw (safety check)."""

from __future__ import annotations

from pathlib import Path

SPECIALS = ["<pad>", "<eos>", "<unk>", "<|system|>", "<|user|>", "<|assistant|>"]
WORDS = ["a", "red", "fox", "snow", "soft", "light", "forest", "golden", "hour", "detailed", "fur", "bokeh", "photo",
         "cinematic", "misty", "morning"]
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} {% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def save_tiny_llm(folder: Path) -> Path:
    """A two-layer Qwen2 chat model over a 16-word vocabulary; it always answers with at least 4 words.

    Words are stored byte-level style (``Ġword``: a space, then the word), as Qwen2's tokenizer decodes them."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    vocab = [*SPECIALS, *("\u0120" + word for word in WORDS)]
    words = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    words.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    words.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=words, pad_token="<pad>", eos_token="<eos>",
                                        unk_token="<unk>", extra_special_tokens=SPECIALS[3:],
                                        chat_template=CHAT_TEMPLATE)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=len(vocab), hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                                         max_position_embeddings=512, pad_token_id=0, eos_token_id=1,
                                         bos_token_id=1))
    model.generation_config.min_new_tokens = 4
    model.generation_config.max_new_tokens = 12
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def save_tiny_classifier(folder: Path, says: str) -> Path:
    """A tiny ViT with labels {0: normal, 1: nsfw} whose classifier bias makes it say ``says`` for any image."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    labels = {0: "normal", 1: "nsfw"}
    torch.manual_seed(0)
    model = ViTForImageClassification(ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1,
                                                num_attention_heads=2, intermediate_size=32, id2label=labels,
                                                label2id={v: k for k, v in labels.items()}))
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([0.0, 8.0] if says == "nsfw" else [8.0, 0.0]))
    model.save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder

"""Parts several profiles build from: offline tokenizers, miniature encoders and VAEs, published configs.

Tokenizers are written from in-memory vocabularies (single characters, no merges), so tiny pipelines and
random-weight real architectures need no download; prompts still tokenize and pad to the real lengths.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from typing import Any

#: a miniature CLIP text encoder
TINY_CLIP: dict[str, Any] = dict(bos_token_id=0, eos_token_id=2, pad_token_id=1, hidden_size=32, intermediate_size=37,
                                  layer_norm_eps=1e-05, num_attention_heads=4, num_hidden_layers=2, vocab_size=1000,
                 hidden_act="gelu", projection_dim=32, max_position_embeddings=77)
CLIP_L = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
              num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768,
              bos_token_id=0, eos_token_id=2, pad_token_id=1)
CLIP_G = dict(CLIP_L, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20,
              hidden_act="gelu", projection_dim=1280)
T5_XXL = dict(vocab_size=32128, d_model=4096, d_ff=10240, d_kv=64, num_heads=64, num_layers=24,
              feed_forward_proj="gated-gelu", relative_attention_num_buckets=32, relative_attention_max_distance=128)
VAE = dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
           up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
           norm_num_groups=32, sample_size=1024, force_upcast=True)
VAE_16 = dict(VAE, latent_channels=16, use_quant_conv=False, use_post_quant_conv=False)
#: Qwen's chat markup (the subset the Qwen3 templates of FLUX.2 [klein] and Z-Image use)
QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and not enable_thinking %}<think>\n\n</think>\n\n{% endif %}{% endif %}")


def clip_tokenizer() -> Any:
    """A byte-level BPE CLIP tokenizer whose vocabulary is single characters (no merges)."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in bytes_to_unicode().values():
        vocab.setdefault(char, len(vocab))
        vocab.setdefault(char + "</w>", len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=[], unk_token="<|endoftext|>", bos_token="<|startoftext|>",
                         eos_token="<|endoftext|>", pad_token="<|endoftext|>", model_max_length=77)


def t5_tokenizer() -> Any:
    """A unigram T5 tokenizer over letters, digits and punctuation."""
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -1.0)]
    pieces += [(c, -2.0) for c in string.ascii_letters + string.digits + string.punctuation]
    pieces += [("\u2581" + c, -1.5) for c in string.ascii_lowercase]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=512)


def qwen_tokenizer() -> Any:
    """A byte-level BPE Qwen2 tokenizer (256 byte tokens, Qwen's chat markup, a Qwen3-style chat template)."""
    from transformers import Qwen2Tokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    vocab = {char: index for index, char in enumerate(bytes_to_unicode().values())}
    for token in QWEN_SPECIAL:
        vocab[token] = len(vocab)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[], model_max_length=32768,
                               additional_special_tokens=QWEN_SPECIAL[1:])
    tokenizer.chat_template = QWEN_CHAT_TEMPLATE
    return tokenizer


#: Mistral's chat markup, over message contents given as lists of text parts (FLUX.2 [dev]'s prompt format)
MISTRAL_CHAT_TEMPLATE = (
    "{% for message in messages %}{% set text = message['content'] if message['content'] is string else "
    "message['content'] | selectattr('type', 'equalto', 'text') | map(attribute='text') | join('') %}"
    "{% if message['role'] == 'system' %}[SYSTEM_PROMPT]{{ text }}[/SYSTEM_PROMPT]"
    "{% elif message['role'] == 'user' %}[INST]{{ text }}[/INST]{% else %}{{ text }}</s>{% endif %}{% endfor %}")


def mistral_tokenizer() -> Any:
    """:func:`qwen_tokenizer`'s byte-level vocabulary with Mistral's chat markup, standing in for FLUX.2 [dev]'s
    PixtralProcessor (which needs torchvision): prompts are padded to the real length all the same."""
    tokenizer = qwen_tokenizer()
    tokenizer.chat_template = MISTRAL_CHAT_TEMPLATE
    return tokenizer


#: text-encoder class -> the offline tokenizer that stands in for its real one when a published architecture is
#: built with random weights (``real_models``, :func:`masuka.models.synthetic.real_pipeline`): a profile whose
#: ``real_models`` name a text-encoder class not here adds it
TOKENIZERS: dict[str, Callable[[], Any]] = {
    "CLIPTextModel": clip_tokenizer, "CLIPTextModelWithProjection": clip_tokenizer, "T5EncoderModel": t5_tokenizer,
    "Qwen3ForCausalLM": qwen_tokenizer, "Qwen3Model": qwen_tokenizer,
    "Qwen2_5_VLForConditionalGeneration": qwen_tokenizer, "Mistral3ForConditionalGeneration": mistral_tokenizer}
#: vocabulary size a miniature Qwen encoder needs for :func:`qwen_tokenizer`
QWEN_TINY_VOCAB = 256 + len(QWEN_SPECIAL)


def clip_encoder(class_name: str) -> Any:
    import transformers

    return getattr(transformers, class_name)(transformers.CLIPTextConfig(**TINY_CLIP))


def t5_encoder(d_model: int = 32) -> Any:
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(vocab_size=1000, d_model=d_model, d_ff=37, d_kv=8, num_heads=4,
                                   num_layers=2, relative_attention_num_buckets=8))


def tiny_vae(latent_channels: int, **extra: Any) -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(block_out_channels=(8, 8, 8, 8), in_channels=3, out_channels=3,
                         down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                         layers_per_block=1, latent_channels=latent_channels, norm_num_groups=4,
                         sample_size=64, **extra)

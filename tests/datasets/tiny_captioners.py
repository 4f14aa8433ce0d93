"""Tiny random Florence-2 and BLIP-2 captioners, written with ``save_pretrained`` without any download.

Tokenizers are byte-level BPE over single characters (no merges). The saved generation config asks for a
few tokens at least, so random weights still produce a visible caption.
"""

from __future__ import annotations

from pathlib import Path


def _byte_vocab(specials: list[str]) -> dict[str, int]:
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    vocab = {token: index for index, token in enumerate(specials)}
    for char in bytes_to_unicode().values():
        vocab.setdefault(char, len(vocab))
    return vocab


def save_tiny_florence2(folder: Path) -> Path:
    import torch
    from transformers import (
        BartTokenizer,
        CLIPImageProcessorPil,
        Florence2Config,
        Florence2ForConditionalGeneration,
        Florence2Processor,
    )

    tokenizer = BartTokenizer(vocab=_byte_vocab(["<s>", "<pad>", "</s>", "<unk>", "<mask>"]), merges=[],
                              extra_special_tokens={"image_token": "<image>"}, model_max_length=1024)
    # 64 px input, strides 4·2·2·2 → 2×2 patches + 1 pooled token = 5 image tokens
    images = CLIPImageProcessorPil(size={"height": 64, "width": 64}, crop_size={"height": 64, "width": 64},
                                   do_center_crop=False, image_seq_length=5)
    vision = dict(depths=[1, 1, 1, 1], embed_dim=[8, 8, 16, 16], num_heads=[1, 1, 2, 2], num_groups=[1, 1, 2, 2],
                  window_size=2, projection_dim=16, max_position_embeddings=8, max_temporal_embeddings=4)
    text = dict(model_type="bart", vocab_size=len(tokenizer), d_model=16, encoder_layers=1, decoder_layers=1,
                encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                max_position_embeddings=320, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                decoder_start_token_id=2)
    torch.manual_seed(0)
    model = Florence2ForConditionalGeneration(Florence2Config(vision_config=vision, text_config=text,
                                                              image_token_id=tokenizer.image_token_id))
    model.generation_config.min_new_tokens = 4
    model.save_pretrained(folder)
    Florence2Processor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def save_tiny_blip2(folder: Path) -> Path:
    import torch
    from transformers import (
        Blip2Config,
        Blip2ForConditionalGeneration,
        Blip2Processor,
        BlipImageProcessorPil,
        GPT2Tokenizer,
    )

    tokenizer = GPT2Tokenizer(vocab=_byte_vocab(["<|endoftext|>", "<pad>"]), merges=[], unk_token="<|endoftext|>",
                              bos_token="<|endoftext|>", eos_token="<|endoftext|>", pad_token="<pad>",
                              model_max_length=128)
    processor = Blip2Processor(image_processor=BlipImageProcessorPil(size={"height": 32, "width": 32}),
                               tokenizer=tokenizer, num_query_tokens=4)  # adds the <image> token
    config = Blip2Config(
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        qformer_config=dict(vocab_size=99, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=32, encoder_hidden_size=16, max_position_embeddings=32),
        text_config=dict(model_type="opt", vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1,
                         ffn_dim=32, num_attention_heads=2, max_position_embeddings=320, word_embed_proj_dim=16,
                         pad_token_id=1, bos_token_id=0, eos_token_id=0),
        num_query_tokens=4, image_token_index=tokenizer.convert_tokens_to_ids("<image>"))
    torch.manual_seed(0)
    model = Blip2ForConditionalGeneration(config)
    model.generation_config.min_new_tokens = 4
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder

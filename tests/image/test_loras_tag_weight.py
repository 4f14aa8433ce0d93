"""A ``<lora:name:weight>`` tag whose weight is not a number is refused naming the tag (A1111 errors on it too),
instead of staying in the prompt as words with no LoRA; read back from a file's text, it stays as it was."""

from __future__ import annotations

import pytest

from masuka.errors import InvalidInput
from masuka.image.generate import ImageRequest, plan_request
from masuka.loras.tags import split_lora_tags


@pytest.mark.parametrize("tag", ["<lora:fox:0,8>", "<lora:fox:abc>", "<lora:fox:0.8:x>", "<lora:fox:te=a>"])
def test_a_tag_whose_weight_is_not_a_number_is_refused(studio, tiny_model, tag):
    with pytest.raises(InvalidInput) as refused:
        plan_request(studio, ImageRequest(prompt=f"a castle {tag}", model=str(tiny_model("flux"))))
    assert str(refused.value) == (f"The LoRA tag {tag} has a weight that is not a number: write the weight as a "
                                  "number such as 0.8 (<lora:fox:0.8>).")
    assert studio.models.loads == 0


def test_numbers_in_every_form_still_work_and_text_read_back_keeps_the_tag():
    assert split_lora_tags("a <lora:fox:0.8> b <lora:owl> <lora:cat:1:.5> <lora:elk:unet=2:dyn=x>", strict=True) \
        == ("a b", [("fox", 0.8), ("owl", 1.0), ("cat", 0.5), ("elk", 2.0)])
    assert split_lora_tags("a <lora:fox:0,8>") == ("a <lora:fox:0,8>", [])


def test_a_lyco_tag_is_a_lora_tag_as_in_a1111():
    """A1111 registers ``lyco`` as an alias of its LoRA network: such a tag was left in the prompt as words."""
    assert split_lora_tags("a <lyco:fox:0.8> b <lora:owl:0.5>", strict=True) == ("a b", [("fox", 0.8), ("owl", 0.5)])

"""Tiny random identity models (an ONNX face recognizer, CLIP, a ViT), the bundled astronaut portrait and a no-face
picture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def save_tiny_clip(folder: Path) -> Path:
    """A CLIP with a two-layer 32-px vision tower and random weights, saved with ``save_pretrained``."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel

    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=dict(vocab_size=100, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=16, bos_token_id=0, eos_token_id=1),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                           num_attention_heads=2),
        projection_dim=16)
    CLIPModel(config).save_pretrained(folder)
    CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def tiny_face_onnx() -> bytes:
    """An ONNX model shaped like SFace (a 1x3x112x112 face in, a 1x32 feature out) with random weights: pixels
    centred, one strided convolution, ReLU, a dense layer; written with the ``onnx`` package."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(np.float32(127.5), "mid"),
               numpy_helper.from_array(rng.standard_normal((8, 3, 8, 8)).astype(np.float32) / 100, "conv"),
               numpy_helper.from_array(rng.standard_normal((8 * 14 * 14, 32)).astype(np.float32), "dense")]
    nodes = [helper.make_node("Sub", ["data", "mid"], ["centred"]),
             helper.make_node("Conv", ["centred", "conv"], ["features"], strides=[8, 8]),
             helper.make_node("Relu", ["features"], ["positive"]),
             helper.make_node("Flatten", ["positive"], ["flat"]),
             helper.make_node("MatMul", ["flat", "dense"], ["fc1"])]
    graph = helper.make_graph(nodes, "tiny-face", [helper.make_tensor_value_info("data", TensorProto.FLOAT,
                                                                                 [1, 3, 112, 112])],
                              [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, [1, 32])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def save_tiny_facenet(folder: Path) -> Path:
    """A folder holding :func:`tiny_face_onnx` as ``face.onnx`` (what the identity filter loads with OpenCV)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "face.onnx").write_bytes(tiny_face_onnx())
    return folder


def save_tiny_vit(folder: Path) -> Path:
    """A plain ViT (what a face-embedding model in transformers format may look like): token features, no CLIP."""
    import torch
    from transformers import ViTConfig, ViTImageProcessorPil, ViTModel

    torch.manual_seed(0)
    ViTModel(ViTConfig(image_size=32, patch_size=8, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                       num_attention_heads=2)).save_pretrained(folder)
    ViTImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> Path:
    return save_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="session")
def tiny_facenet(tmp_path_factory) -> Path:
    return save_tiny_facenet(tmp_path_factory.mktemp("tiny-facenet"))


@pytest.fixture(scope="session")
def portrait(tmp_path_factory) -> Path:
    """scikit-image's bundled photo of Eileen Collins (one face), as a PNG file."""
    from skimage import data

    path = tmp_path_factory.mktemp("photos") / "astronaut.png"
    Image.fromarray(data.astronaut()).save(path)
    return path


@pytest.fixture(scope="session")
def no_face(tmp_path_factory) -> Path:
    """A landscape of smooth colour bands: no face anywhere."""
    path = tmp_path_factory.mktemp("photos") / "bands.png"
    rows = np.linspace(0, 255, 256, dtype=np.uint8)
    Image.fromarray(np.stack([np.tile(rows[:, None], (1, 320))] * 3, axis=-1)).save(path)
    return path

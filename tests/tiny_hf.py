"""Tiny transformers configs shared by the tests of the HF classifiers and segmenters."""

# DINOv2: a stored 8 x 8 positional grid (image_size 32, patch 4)
TINY_DINOV2 = {
    "image_size": 32,
    "patch_size": 4,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "mlp_ratio": 2,
}
# ViT: a stored 4 x 4 positional grid (image_size 16, patch 4)
TINY_VIT = {
    "image_size": 16,
    "patch_size": 4,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
}

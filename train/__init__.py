"""Training: backbones, losses, trainer, retrieval evaluation and the ablation runner."""

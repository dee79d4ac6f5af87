"""lora: low-rank adapters on the attention projections, through the peft library."""

from __future__ import annotations

from .base import Strategy


class LoRA(Strategy):
    """LoRA (Hu et al. 2022) injected with ``peft.inject_adapter_in_model``; the backbone stays frozen."""

    name = "lora"
    default_learning_rate = 5e-4
    options = {"r": 8, "alpha": 16, "dropout": 0.1, "target_modules": None}

    def setup(self, module, ctx):
        from peft import LoraConfig, inject_adapter_in_model
        from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

        model_type = getattr(module.encoder.config, "model_type", None)
        targets = self.settings["target_modules"] or TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(model_type)
        if not targets:
            raise ValueError(
                f"strategy='lora' has no default target modules for model_type={model_type!r}; "
                "pass strategy_options={'target_modules': [...]}"
            )
        config = LoraConfig(
            r=int(self.settings["r"]), lora_alpha=self.settings["alpha"], lora_dropout=self.settings["dropout"],
            target_modules=list(targets), bias="none",
        )
        inject_adapter_in_model(config, module.encoder)
        for name, p in module.encoder.named_parameters():
            p.requires_grad_("lora_" in name)
        return None

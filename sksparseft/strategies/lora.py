"""lora: low-rank adapters on the attention projections, through the peft library."""

from __future__ import annotations

import numbers

from .base import Strategy


class LoRA(Strategy):
    """LoRA (Hu et al. 2022) injected with ``peft.inject_adapter_in_model``; the backbone stays frozen."""

    name = "lora"
    default_learning_rate = 5e-4
    options = {"r": 8, "alpha": 16, "dropout": 0.1, "target_modules": None}
    prefixes = ("lora_",)

    def validate(self):
        self._check_int("r", 1)
        dropout = self.settings["dropout"]
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"strategy_options dropout must be a number in [0, 1), got {dropout!r}")

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
            p.requires_grad_(self.is_own(name))
        return None

    def rebuild(self, module):
        self.setup(module, None)

    def plain_backbone_state(self, encoder):
        """LoRA layers folded: ``base weight + B A * scaling`` under the original names."""
        state, folded = {}, set()
        for name, mod in encoder.named_modules():
            if hasattr(mod, "base_layer") and hasattr(mod, "get_delta_weight"):
                prefix = f"{name}." if name else ""
                weight = mod.base_layer.weight.detach().clone()
                for adapter in getattr(mod, "active_adapters", ["default"]):
                    if adapter in getattr(mod, "lora_A", {}):
                        weight += mod.get_delta_weight(adapter).to(weight.dtype)
                state[f"{prefix}weight"] = weight
                if getattr(mod.base_layer, "bias", None) is not None:
                    state[f"{prefix}bias"] = mod.base_layer.bias.detach().clone()
                folded.add(prefix)
        for key, value in encoder.state_dict().items():
            if self.is_own(key):
                continue
            plain = key.replace(".base_layer.", ".")
            if any(plain.startswith(p) for p in folded) and plain in state:
                continue
            state[plain] = value.detach().clone()
        return state

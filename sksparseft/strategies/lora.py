"""lora: low-rank adapters on the attention projections, through the peft library."""

from __future__ import annotations

from dataclasses import dataclass

from .base import Strategy
from .options import option


@dataclass(frozen=True)
class LoRAOptions:
    r: int = option(8, "rank of the adapters", low=1)
    alpha: float = option(16, "scaling numerator: the adapters' update is scaled by `alpha / r`", above=0)
    dropout: float = option(0.1, "dropout on the adapters' input", low=0, below=1)
    target_modules: list[str] | None = option(
        None, "names of the modules that get adapters; None: peft's table for the model type (query, value for BERT)")


class LoRA(Strategy):
    """LoRA (Hu et al. 2022) injected with ``peft.inject_adapter_in_model``; the backbone stays frozen."""

    name = "lora"
    trains = ("LoRA adapters on the attention projections (r x (in + out) new parameters per target), injected by "
              "`peft.inject_adapter_in_model`; the backbone stays frozen")
    default_learning_rate = 5e-4
    options = LoRAOptions
    prefixes = ("lora_",)

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

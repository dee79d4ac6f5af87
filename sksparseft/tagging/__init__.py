"""Slots and intents: :class:`TokenSparseTagger`, its scores and scorers."""

from .estimator import TokenSparseTagger
from .targets import (frame_accuracy_score, intent_accuracy_score, intent_accuracy_scorer, slot_f1_score,
                      slot_f1_scorer)

__all__ = ["TokenSparseTagger", "frame_accuracy_score", "intent_accuracy_score", "intent_accuracy_scorer",
           "slot_f1_score", "slot_f1_scorer"]

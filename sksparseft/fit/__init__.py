"""How ``TokenSparseClassifier.fit`` runs: the stages (:mod:`.stages`) over one fit's state
(:mod:`.state`), and the algorithms they call: training loop and linear probe, contrastive
stage, probe-to-finetune interpolation, rejection, targets and losses, resumable checkpoints."""

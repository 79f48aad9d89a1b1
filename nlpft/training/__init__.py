"""Training machinery shared by every trainer: weights I/O, divergence checks, memory
limits, precision, and checkpoint discovery (`checkpoints`, used by the RNN LM trainer
and the Hugging Face one alike).

`hf.SafeCheckpointTrainer` is `transformers.Trainer` with pickle-free, atomically
published checkpoints; import it from `nlpft.training.hf` (it imports transformers).
"""

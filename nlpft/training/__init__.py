"""Training machinery shared by the Hugging Face-based commands (pretrain, finetune).

`hf.SafeCheckpointTrainer` is `transformers.Trainer` with pickle-free, atomically
published checkpoints; import it from `nlpft.training.hf` (it imports transformers).
"""

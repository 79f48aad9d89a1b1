"""nlpft: NLP pretraining and fine-tuning from the command line."""

__version__ = "0.1.0"

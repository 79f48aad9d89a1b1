"""nlpft: NLP pretraining and fine-tuning from the command line."""

from nlpft.version import __version__

__all__ = ["__version__"]

"""Fine-tuning: one runner, task heads on any backbone (see `nlpft.runners.finetune`).

`tasks` (loss, probabilities, decisions per task), `data` (encoding, dynamic padding),
`trainer` (the Trainer subclass and keep-best callback), `metrics` (scikit-learn metrics,
report and plots), `tfidf` (the scikit-learn baseline). Submodules import torch or
scikit-learn themselves, so importing this package stays cheap.
"""

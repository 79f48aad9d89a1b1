"""Fine-tuning: task plug-ins on backbone plug-ins, orchestrated by `nlpft.runners.finetune`.

`tasks` (one module per task: reading, labels, loss, decisions, metrics, predictions),
`backbones` (one module per backbone: detect, build for training, load for inference),
`options` (every shared option declared once), `plugin_options` (the options a task or
backbone declares itself: flags, --help sections, resolution), `fit` (the shared neural
training path), `inference` (a saved output loaded back), `outputs` (report, plots,
predictions), `data` (encoding, dynamic padding), `trainer` (the Trainer subclass and
keep-best callback), `metrics` (scikit-learn metrics, report and plots), `tfidf` (the
scikit-learn baseline). Submodules import torch or scikit-learn themselves, so importing this package
stays cheap.
"""

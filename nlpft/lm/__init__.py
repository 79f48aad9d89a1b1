"""RNN language models: the model (`nlpft.lm.model`), text generation (`nlpft.lm.sampling`),
language-model data batching and training.

Nothing is imported here, so `import nlpft.lm.<module>` costs only what that module needs.
"""

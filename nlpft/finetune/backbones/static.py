"""Static word vectors as the backbone (an `nlpft embed train` directory or a word2vec /
fastText / GloVe file), frozen or tuned, under the task's head (one decision per text:
mean and max pooling + an MLP)."""

from __future__ import annotations

import sys
from pathlib import Path

from nlpft.errors import UserInputError
from nlpft.finetune.backbones.base import Prepared
from nlpft.finetune.backbones.word_common import WordBackbone, WordFeatures

VECTOR_SUFFIXES = {".bin", ".txt", ".vec", ".gz"}


class StaticVectors(WordBackbone):
    name = "static"
    summary = "an `nlpft embed train` directory or a word2vec file: static vectors, mean+max pooling + MLP"
    owner = "static vectors"
    owner_models = "--model an `nlpft embed train` directory or a word2vec file"
    made_by = ("embed",)

    @classmethod
    def detect(cls, spec: str) -> bool:
        path = Path(spec)
        if path.is_dir():
            return (path / "vectors.bin").is_file()
        return path.is_file() and path.suffix in VECTOR_SUFFIXES

    def prepare(self, opts) -> Prepared:
        from nlpft.embeddings.vectors_io import load_vectors
        from nlpft.tokenization import WordTokenizer

        kv = load_vectors(self.spec)
        folder = Path(self.spec)
        if folder.is_dir() and (folder / "tokenizer.json").is_file():
            tokenizer = WordTokenizer.load(folder / "tokenizer.json")
        else:  # a bare word2vec file: its words are the vocabulary; keep case if the file has any
            words = list(kv.index_to_key)
            tokenizer = WordTokenizer.from_vocabulary(words, lowercase=not any(w != w.lower() for w in words[:10000]))
        pad = tokenizer.token_to_id("[PAD]") or 0
        features = WordFeatures(kind="static", vocab_size=tokenizer.vocab_size, embedding_dim=kv.vector_size,
                                pad_id=pad, rnn=None,
                                initialise=lambda model: self._copy_vectors(kv, tokenizer, pad, model, opts),
                                freeze_embeddings=opts.backbone_options.freeze_embeddings)
        return Prepared(tokenizer=tokenizer, pad_id=pad, max_length=opts.max_length,
                        build_model=lambda task: self.build(features, task, opts))

    def _copy_vectors(self, kv, tokenizer, pad: int, model, opts) -> None:
        """The vectors of the tokenizer's words into the model's embedding; the others keep a
        seeded uniform initialisation, the padding row zeros."""
        import numpy as np
        import torch

        from nlpft.embeddings.vectors_io import vectors_for_vocabulary

        init = np.random.default_rng(opts.seed).uniform(-0.1, 0.1, (tokenizer.vocab_size, kv.vector_size))
        matrix, coverage = vectors_for_vocabulary(kv, tokenizer, init.astype(np.float32))
        if coverage["found"] == 0:
            raise UserInputError(f"{self.spec}: none of the tokenizer's {coverage['words']:,} words has a vector; "
                                 "tokenizer.json and the vectors come from different runs")
        matrix[pad] = 0.0
        with torch.no_grad():
            model.token_embedding().weight.copy_(torch.from_numpy(matrix))
        if not opts.quiet:
            state = "frozen" if opts.backbone_options.freeze_embeddings else "tuned"
            print(f"  static vectors: {coverage['found']:,}/{coverage['words']:,} words "
                  f"({coverage['coverage']:.1%}) {state}", file=sys.stderr)

"""`--method frozen`: sentence embeddings from an encoder that is never trained, read by the
linear head that the TF-IDF baseline also fits (`nlpft.finetune.linear_head`).

    text -> encoder (frozen) -> mean of the token states over the attention mask
         -> L2-normalised (sentence-transformers' convention for MiniLM) -> linear head

A text pair is embedded one text at a time and read as [u, v, |u - v|] (the
sentence-transformers classification features), so the head sees each side and how far
apart they are. Saved as the encoder in a stock Hugging Face directory (`AutoModel` and
the tokenizer load it without nlpft) plus the head: `frozen_head.safetensors` (coef,
intercept) and `frozen_head.json` (how the features were made). Nothing is pickled.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from nlpft.errors import UserInputError
from nlpft.finetune.linear_head import LinearHead

HEAD_WEIGHTS = "frozen_head.safetensors"
HEAD_CONFIG = "frozen_head.json"
#: the logistic regression's inverse regularisation on unit-length embeddings; sklearn's default,
#: and the best of 0.1/1/10/100 (within noise of 0.1) in 5-fold CV on the polarity sentences
HEAD_C = 1.0


class FrozenEncoderClassifier:
    def __init__(self, encoder, head: LinearHead | None, max_length: int, pairs: bool, head_c: float = HEAD_C,
                 windows: bool = False):
        self.encoder = encoder  # an nlpft.pretrained.encode.SentenceEncoder
        self.head = head
        self.head_c = head_c  # the C the head was (or will be) fitted with, saved in its JSON
        self.max_length = max_length
        self.pairs = pairs
        # the head was fitted on texts read in windows (`document_features`); saved in its JSON,
        # absent from heads saved before this method read windows, which were fitted on texts cut
        # at max_length whatever their finetune.json says
        self.windows = windows

    @classmethod
    def pretrained(cls, spec: str, tokenizer, max_length: int, pairs: bool) -> FrozenEncoderClassifier:
        """The pretrained encoder of `spec` read through `tokenizer` (an nlpft HFTokenizer,
        already checked against the model's config), without a head yet (see `fit_head`)."""
        from nlpft.pretrained.encode import SentenceEncoder
        from nlpft.pretrained.loading import load_model, resolve_model

        resolved = resolve_model(spec)
        encoder = SentenceEncoder(load_model(resolved, head="base", quiet=True), tokenizer, name=resolved.name,
                                  family=resolved.family, path=str(resolved.path))
        return cls(encoder, None, max_length, pairs)

    def features(self, texts: list[str], pairs: list[str | None] | None, batch_size: int = 32,
                 progress: Callable[[int], None] | None = None) -> np.ndarray:
        """(texts, dim) unit vectors; for pairs (texts, 3 * dim): [u, v, |u - v|].
        `progress(n)` is told each time n more texts are embedded."""
        if self.pairs and pairs is None:
            raise UserInputError("this model was trained on text pairs; pass the second texts too")
        first = self._embed(texts, batch_size, progress)
        if not self.pairs:
            return first
        second = self._embed([p or "" for p in pairs], batch_size, progress)
        return np.hstack([first, second, np.abs(first - second)])

    def _embed(self, texts: list[str], batch_size: int, progress: Callable[[int], None] | None) -> np.ndarray:
        return self.encoder.encode(texts, batch_size=batch_size, max_length=self.max_length, pooling="mean",
                                   normalize=True, progress=_increments(progress))

    def document_features(self, encoded, batch_size: int = 32,
                          progress: Callable[[int], None] | None = None) -> np.ndarray:
        """(texts, dim) unit vectors of texts read in windows (`encoded`: the task's
        `encode_windows` output, one entry per window): each text's vector is the mean of its
        windows' vectors, L2-normalised again. The windows' vectors are unit vectors, so their
        mean points along the text's average direction but is shorter the more its windows
        disagree; renormalising keeps that direction and gives the head unit vectors, as it
        gets for a text read whole, whatever the number of windows.
        `progress(n)` is told each time n more windows are embedded."""
        from nlpft.finetune.data import pool_windows

        windows = self.encoder.encode_ids(encoded.input_ids, batch_size=batch_size, pooling="mean", normalize=True,
                                          progress=_increments(progress))
        mean = pool_windows(windows, encoded.documents, len(encoded.windows_made), "mean")
        return mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)

    def fit_head(self, features: np.ndarray, task, gold: np.ndarray, seed: int, C: float = HEAD_C) -> None:
        self.head = LinearHead.fit(features, task, gold, seed=seed, C=C)
        self.head_c = C

    def logits(self, features: np.ndarray) -> np.ndarray:
        return self.head.logits(features)

    def num_parameters(self) -> int:
        """The head's: the only weights this method trains."""
        return self.head.num_parameters()

    # -- files ---------------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        from nlpft.training.weights import save_numpy_file

        folder = Path(folder)
        self.encoder.model.save_pretrained(str(folder))
        self.encoder.tokenizer.hf.save_pretrained(str(folder))
        save_numpy_file(self.head.arrays(), str(folder / HEAD_WEIGHTS))
        settings = {"pooling": "mean", "normalize": True, "pair_features": "u,v,|u-v|" if self.pairs else None,
                    "features": int(self.head.coef.shape[1]), "outputs": int(self.head.coef.shape[0]), "C": self.head_c,
                    "windows": "mean of the windows' embeddings, normalised" if self.windows else None}
        (folder / HEAD_CONFIG).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder: Path, max_length: int) -> FrozenEncoderClassifier:
        from safetensors.numpy import load_file

        from nlpft.pretrained.encode import SentenceEncoder

        folder = Path(folder)
        try:
            settings = json.loads((folder / HEAD_CONFIG).read_text(encoding="utf-8"))
            head = LinearHead.from_arrays(load_file(str(folder / HEAD_WEIGHTS)))
        except (OSError, ValueError, KeyError) as exc:
            raise UserInputError(f"{folder}: the frozen encoder's head files are missing or damaged ({exc})") from None
        pairs = settings.get("pair_features") is not None
        encoder = SentenceEncoder.load(str(folder), quiet=True)
        expected = encoder.dim * (3 if pairs else 1)
        if head.coef.shape[1] != expected:
            raise UserInputError(f"{folder / HEAD_WEIGHTS}: a head over {head.coef.shape[1]} features, but the "
                                 f"encoder gives {expected}; the files come from different runs (retrain)")
        return cls(encoder, head, max_length, pairs, head_c=float(settings.get("C", HEAD_C)),
                   windows=settings.get("windows") is not None)


def _increments(progress: Callable[[int], None] | None) -> Callable[[int, int], None] | None:
    """`progress(n more)` as the encoder's `(done, total)` callback."""
    if progress is None:
        return None
    done = [0]

    def report(finished: int, _total: int) -> None:
        progress(finished - done[0])
        done[0] = finished

    return report

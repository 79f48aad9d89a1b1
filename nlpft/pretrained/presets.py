"""What `nlpft pretrain` can build: architectures, their objectives and the size presets.
Plain data, no torch, so the options (`nlpft.pretrained.options`) offer and check them
without loading anything."""

from __future__ import annotations

from dataclasses import dataclass

from nlpft.errors import UserInputError

ARCHS = ("gpt2", "bert")
#: each architecture's own objective, and all it can learn (mlm+nsp: BERT's masked LM plus
#: next-sentence prediction, `sentence_pairs`)
OBJECTIVE = {"gpt2": "clm", "bert": "mlm"}
ARCH_OBJECTIVES = {"gpt2": ("clm",), "bert": ("mlm", "mlm+nsp")}
OBJECTIVES = ("mlm", "mlm+nsp", "clm")
TOKENIZER_KIND = {"gpt2": "byte-bpe", "bert": "wordpiece"}


@dataclass(frozen=True)
class SizePreset:
    """Model shape for one size name; the same numbers for both architectures."""

    hidden: int
    layers: int
    heads: int
    block_size: int
    vocab_size: int  # of the tokenizer nlpft trains when none is given

    @property
    def intermediate(self) -> int:
        return 4 * self.hidden


#: "tiny" trains to readable text on 2 CPU cores in minutes; "small" in about an hour;
#: "base" is the GPT-2 / BERT-base shape, for machines with accelerators.
SIZES: dict[str, SizePreset] = {
    "tiny": SizePreset(hidden=128, layers=4, heads=4, block_size=128, vocab_size=8192),
    "small": SizePreset(hidden=256, layers=6, heads=8, block_size=256, vocab_size=16384),
    "base": SizePreset(hidden=768, layers=12, heads=12, block_size=512, vocab_size=30522),
}


def check_objective(arch: str, objective: str) -> None:
    """`objective` is one `arch` can learn."""
    if objective not in ARCH_OBJECTIVES[arch]:
        raise UserInputError(f"--objective {objective} does not apply to --arch {arch}, which learns "
                             f"{' or '.join(ARCH_OBJECTIVES[arch])}; drop --objective or change --arch")

"""`--class-weights`: per-class loss weights from an option and the training label counts."""

from __future__ import annotations

from nlpft.errors import UserInputError


def class_weights(option: str | None, counts: list[int], labels: list[str]) -> list[float] | None:
    """`--class-weights`: None/"none"; "auto" = n / (classes x count) (sklearn's "balanced");
    or "label=weight,label=weight" (unnamed labels get 1.0)."""
    if option is None or option == "none":
        return None
    if option == "auto":
        total, k = sum(counts), len(counts)
        return [total / (k * c) if c else 1.0 for c in counts]
    weights = dict.fromkeys(labels, 1.0)
    for part in option.split(","):
        name, _, value = part.partition("=")
        name = name.strip()
        if name not in weights:
            raise UserInputError(f"--class-weights: unknown label {name!r}; labels are {', '.join(labels)}")
        try:
            weights[name] = float(value)
        except ValueError:
            raise UserInputError(f"--class-weights: {part!r} is not label=number") from None
        if weights[name] <= 0:
            raise UserInputError(f"--class-weights: the weight of {name!r} must be positive")
    return [weights[name] for name in labels]

"""`nlpft lm eval | generate` for Hugging Face checkpoints (GPT- and BERT-style).

The same verbs as for the RNN LM; the command line hands a model over here when it is not an
nlpft RNN LM directory (an alias, a hub id, or a directory whose config.json names a
transformers model type).

Scores. Causal models: perplexity over the text cut into non-overlapping blocks of
`block_size` tokens (the first token of each block has no context, as in the training
objective). Masked models: the MLM loss on fixed, seeded masks of 15% of the tokens (the
same masks every time, so before/after comparisons are exact) and its exponential; true
pseudo-perplexity (masking every token in turn) costs one forward pass per token and is
not computed.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

from nlpft.errors import UserInputError, check_seed, check_threads

LN2 = math.log(2)


def _objective(resolved) -> str:
    from nlpft.pretrained.pretraining import family_objective

    return family_objective(resolved.model_type or "?", resolved.family)


def _load_lm(resolved, objective: str):
    from nlpft.pretrained.loading import load_model, load_tokenizer
    from nlpft.pretrained.pretraining import head_is_new
    from nlpft.training.weights import model_tensors, refuse_non_finite

    tokenizer = load_tokenizer(resolved).hf
    model, info = load_model(resolved, head=objective, quiet=True, output_loading_info=True)
    refuse_non_finite(model_tensors(model), resolved.where)
    missing = head_is_new(info.get("missing_keys", []))
    if missing:
        raise UserInputError(
            f"{resolved.name}: the checkpoint has no {objective.upper()} head ({len(missing)} weights missing, "
            f"e.g. {missing[0]}), so it cannot score or generate text; train one first with "
            f"`nlpft pretrain --from {resolved.name} --corpus ... --out DIR`")
    return model, tokenizer


def eval_hf_lm(spec: str, corpus: list[str], batch_size: int = 8, block_size: int | None = None,
               precision: str = "fp32", threads: int | None = None, seed: int = 13,
               mlm_probability: float = 0.15, text_col: str = "text") -> dict:
    from nlpft.data.registry import resolve_corpus
    from nlpft.pretrained.loading import max_positions, resolve_model

    text = resolve_corpus(corpus, text_col=text_col)
    text.validate()
    resolved = resolve_model(spec)
    objective = _objective(resolved)
    if batch_size < 1:
        raise UserInputError("--batch-size must be at least 1")
    check_threads(threads)
    check_seed(seed)
    import torch

    from nlpft.data.token_ids import encode_whole
    from nlpft.pretrained import pretraining

    if threads:
        torch.set_num_threads(threads)
    model, tokenizer = _load_lm(resolved, objective)
    limit = max_positions(resolved.config) or 512
    block_size = block_size or min(limit, 512 if objective == "clm" else 128)
    if not 8 <= block_size <= limit:
        raise UserInputError(f"--block-size must be between 8 and the model's {limit} positions")
    keep_newlines = objective == "clm"
    with tempfile.TemporaryDirectory() as tmp:
        ids = encode_whole(text, pretraining.SubwordLineEncoder(tokenizer, keep_newlines), Path(tmp) / "ids.npy")
        wrap = objective == "mlm"
        blocks = pretraining.PackedBlocks(ids, block_size, cls_id=tokenizer.cls_token_id if wrap else None,
                                          sep_id=tokenizer.sep_token_id if wrap else None)
        if len(blocks) == 0:
            raise UserInputError(f"{text.name}: {ids.shape[0]} tokens is less than one block of {block_size}; "
                                 "use more text or a smaller --block-size")
        if wrap:
            dataset = pretraining.FixedMaskBlocks(blocks, pretraining.TokenMasker(tokenizer, mlm_probability),
                                                  seed=seed)
        else:
            dataset = blocks
        started = time.perf_counter()
        total, count = _score(model, dataset, batch_size, objective, precision)
        elapsed = time.perf_counter() - started
        n_tokens = int(blocks.tokens)
    loss = total / count
    result = {"model": resolved.name, "corpus": text.name, "objective": objective, "block_size": block_size,
              "tokens": n_tokens, "scored_tokens": count, "loss": loss, "perplexity": math.exp(min(loss, 50.0)),
              "bits_per_token": loss / LN2, "tokens_per_s": n_tokens / elapsed if elapsed else None,
              "precision": precision}
    if wrap:
        result["mlm_probability"] = mlm_probability
        result["seed"] = seed
    return result


def _score(model, dataset, batch_size: int, objective: str, precision: str) -> tuple[float, int]:
    """(summed loss over scored tokens, number of scored tokens)."""
    import contextlib

    import torch
    import torch.nn.functional as F

    total, count = 0.0, 0
    autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16"
                else contextlib.nullcontext())
    model.eval()
    with torch.inference_mode(), autocast:
        for start in range(0, len(dataset), batch_size):
            items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            input_ids = torch.stack([item["input_ids"] for item in items])  # (batch, block)
            logits = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids)).logits.float()
            # logits: (batch, block, vocab)
            if objective == "clm":
                logits, labels = logits[:, :-1], input_ids[:, 1:]  # predict token t+1 from <= t
            else:
                labels = torch.stack([item["labels"] for item in items])
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1),
                                   ignore_index=-100, reduction="sum")
            total += float(loss)
            count += int((labels != -100).sum())
    if count == 0:
        raise UserInputError("no tokens were scored (every masked draw was empty); use more text")
    return total, count


def generate_hf(spec: str, prompt: str, max_tokens: int = 50, temperature: float = 1.0,
                top_k: int | None = None, top_p: float | None = None, seed: int | None = None) -> str:
    """The continuation of `prompt` (new text only)."""
    from nlpft.pretrained.loading import max_positions, resolve_model

    resolved = resolve_model(spec)
    if _objective(resolved) != "clm":
        raise UserInputError(f"{resolved.name}: a {resolved.model_type} model is an encoder (BERT-style) and does "
                             "not generate text; use a GPT-style model, or score text with `nlpft lm eval`")
    import torch

    model, tokenizer = _load_lm(resolved, "clm")
    if max_tokens == 0:
        return ""
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"] if prompt else []
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if start is not None:
        ids = [start] + ids  # the model saw text after an end-of-text token, or from a block start
    if not ids:
        raise UserInputError("give a --prompt: the tokenizer has no start token to begin from")
    limit = max_positions(resolved.config) or 512
    if len(ids) + max_tokens > limit:
        raise UserInputError(f"prompt ({len(ids)} tokens) plus --max-tokens {max_tokens} exceeds the model's "
                             f"{limit} positions; shorten one of them")
    if seed is not None:
        torch.manual_seed(seed)
    sampling = temperature > 0
    options = {"do_sample": sampling, "max_new_tokens": max_tokens,
               "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id}
    if sampling:
        options.update(temperature=temperature, top_k=top_k or 0, top_p=top_p if top_p is not None else 1.0)
    input_ids = torch.tensor([ids])
    with torch.inference_mode():
        out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), **options)
    return tokenizer.decode(out[0, len(ids):].tolist(), skip_special_tokens=True)

"""The plain PyTorch reference: the `word_language_model` example's model and loop.

Embedding -> nn.LSTM(layers) -> Linear, (T, B) layout, dropout 0.2, untied, SGD lr 20,
clip 0.25, bptt 35, batch 20 — trained on the same id stream nlpft encoded, for a fixed
number of steps. Prints one JSON line: tokens/s over the timed steps (forward, backward,
clip, update), after a few warm-up steps. Imports nothing from nlpft.

    python benchmarks/lm/reference_loop.py --train ids.npy --vocab 10000 --steps 300
"""

import argparse
import json
import time

import numpy as np
import torch
import torch.nn as nn


class RNNModel(nn.Module):
    def __init__(self, ntoken, ninp, nhid, nlayers, dropout=0.2):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = nn.LSTM(ninp, nhid, nlayers, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)
        self.nlayers, self.nhid = nlayers, nhid
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

    def forward(self, input, hidden):
        emb = self.drop(self.encoder(input))
        output, hidden = self.rnn(emb, hidden)
        output = self.drop(output)
        return self.decoder(output), hidden

    def init_hidden(self, bsz):
        weight = next(self.parameters())
        return (weight.new_zeros(self.nlayers, bsz, self.nhid), weight.new_zeros(self.nlayers, bsz, self.nhid))


def batchify(data, bsz):
    nbatch = data.size(0) // bsz
    return data[: nbatch * bsz].view(bsz, -1).t().contiguous()  # (N, B)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--train", required=True, help=".npy of token ids")
    p.add_argument("--vocab", type=int, required=True)
    p.add_argument("--emsize", type=int, default=200)
    p.add_argument("--nhid", type=int, default=200)
    p.add_argument("--nlayers", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=20)
    p.add_argument("--bptt", type=int, default=35)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    ids = torch.from_numpy(np.load(args.train, mmap_mode="r").astype(np.int64))
    data = batchify(ids, args.batch_size)
    model = RNNModel(args.vocab, args.emsize, args.nhid, args.nlayers)
    criterion = nn.CrossEntropyLoss()
    lr, clip = 20.0, 0.25
    model.train()
    hidden = model.init_hidden(args.batch_size)
    timed_tokens, timed = 0, 0.0
    step = 0
    i = 0
    while step < args.warmup + args.steps:
        if i + 1 >= data.size(0) - 1:
            i = 0
            hidden = model.init_hidden(args.batch_size)
        seq_len = min(args.bptt, data.size(0) - 1 - i)
        inputs, targets = data[i:i + seq_len], data[i + 1:i + 1 + seq_len].reshape(-1)
        started = time.perf_counter()
        hidden = tuple(h.detach() for h in hidden)
        model.zero_grad()
        output, hidden = model(inputs, hidden)
        loss = criterion(output.view(-1, args.vocab), targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        for param in model.parameters():
            param.data.add_(param.grad, alpha=-lr)
        elapsed = time.perf_counter() - started
        if step >= args.warmup:
            timed += elapsed
            timed_tokens += targets.numel()
        step += 1
        i += seq_len
    print(json.dumps({"tokens_per_s": timed_tokens / timed, "steps": args.steps, "loss": float(loss),
                      "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()

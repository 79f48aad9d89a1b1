"""`nlpft export`: a fine-tuned transformer as an ONNX graph (optionally int8), checked
against the original before it is written."""

from __future__ import annotations

import argparse
import sys

from nlpft.cli.main import OUT_HELP, add_config_option, add_overwrite_option
from nlpft.cli.options import add_options, from_args

DESCRIPTION = """\
Export a fine-tuned transformer (the --out directory of `nlpft finetune` with an
hf-encoder or hf-decoder backbone; tasks single, multi, regression, and tag without --crf)
to ONNX: model.onnx computes the logits from the token ids, with any batch size and text
length. --quantize int8 applies ONNX Runtime's dynamic quantization (int8 weights).

The export is compared with the original (torch, fp32) on the model's own test texts (or
the texts of --check FILE): the share of the same decisions (labels, label sets, tags per
word; regression values within 2% of their range) and the largest probability difference
are printed and written to parity.json. Below 99% agreement the export is refused (exit
code 2) and nothing is written.

--out receives a copy of the model directory (tokenizer, config, labels, finetune.json,
the safetensors weights) plus model.onnx and parity.json: predict, evaluate and serve take
it like any model, running it with ONNX Runtime (--runtime torch picks the weights).
Loading checks model.onnx against the sha256 recorded in finetune.json and refuses
operators outside ONNX's and ONNX Runtime's own. Needs the onnx extra:
pip install 'nlpft[onnx]'.
"""

EPILOG = """\
examples:
  nlpft export --model runs/clf --format onnx --quantize int8 --out runs/clf-onnx
  nlpft export --model runs/clf --out runs/clf-onnx --check new.csv
  nlpft predict --model runs/clf-onnx --input new.csv --out predictions.csv
"""


def register(commands: argparse._SubParsersAction) -> None:
    from nlpft.finetune.options import ExportOptions

    p = commands.add_parser("export", help="export a fine-tuned transformer to ONNX (optionally int8)",
                            description=DESCRIPTION, epilog=EPILOG,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(p, ExportOptions)
    p.add_argument("--out", required=True, metavar="DIR", help=OUT_HELP)
    add_overwrite_option(p)
    add_config_option(p)
    p.set_defaults(_handler=run_export, _parser=p)


def run_export(args: argparse.Namespace) -> int:
    from nlpft.finetune.options import ExportOptions
    from nlpft.runners.export import export_summary
    from nlpft.runners.export import run_export as export

    result = export(from_args(ExportOptions, args))
    print(result["parity"].line())
    print(export_summary(result), file=sys.stderr)
    return 0

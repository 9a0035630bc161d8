"""Label a handful of comments and print a table: the quick look, on the labeling job's code path.

python jobs/predict.py --model runs/cv "张国立老师主持得真好" "越王勾践剑太震撼了"
cat comments.txt | python jobs/predict.py --model runs/cv/fold_0

It scores in the precision the labeling job chooses on the same device (bf16 on GPUs of compute capability 8.0
or newer, fp16 on older GPUs, fp32 on CPUs), so near-ties come out as in the labels file; --precision overrides.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from weibolabel.run.config import DEVICE_OPTION, check_positive
from weibolabel.run.device import job_device
from weibolabel.run.launch import setup_logging
from weibolabel.run.layout import find_checkpoints
from weibolabel.run.precision import PRECISIONS, choose_precision, device_capability
from weibolabel.util.errors import UserError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="A training run directory or one checkpoint directory.")
    parser.add_argument("--max_length", type=int, default=None, help="Longest input in tokens (default: the run's).")
    parser.add_argument("--no_calibration", action="store_true", help="Ignore the run's fitted temperature.")
    precision_help = "auto (default): the labeling job's choice for this device; no = fp32."
    parser.add_argument("--precision", choices=["auto", *PRECISIONS], default="auto", help=precision_help)
    parser.add_argument("--device", **DEVICE_OPTION, default="auto")
    encoding_help = "Encoding of the comments on stdin (default: detect, as for .txt files)."
    parser.add_argument("--encoding", default=None, help=encoding_help)
    parser.add_argument("comments", nargs="*", help="Comments to label; read from stdin (one a line) if none.")
    args = parser.parse_args(argv)
    setup_logging()
    try:
        check_positive(args.max_length, "--max_length")  # 0 would silently mean the run's, -5 a tokenizer traceback
        find_checkpoints(Path(args.model))  # a wrong --model is said before the imports below, and before stdin
        comments = args.comments or read_lines(sys.stdin.buffer.read(), args.encoding)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    # torch and transformers take seconds to import: only once the options and the model's path are known good.
    import pandas as pd
    import torch

    from weibolabel.model.inference import inference_dtype, label_texts, load_ensemble
    from weibolabel.model.loading import fit_max_length

    try:
        device = torch.device(job_device(args.device))
        precision, warning = choose_precision(
            None if args.precision == "auto" else args.precision,
            device_type=device.type,
            compute_capability=device_capability(device),
        )
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
        dtype = inference_dtype(device, precision)
        ensemble = load_ensemble(args.model, device, dtype, calibrated=not args.no_calibration)
        max_length, lowered = fit_max_length(
            args.max_length or ensemble.max_length, ensemble.models[0].config.max_position_embeddings
        )
        if lowered:
            print(f"warning: {lowered}", file=sys.stderr)
        labels = label_texts(ensemble, comments, max_length)
    except torch.cuda.OutOfMemoryError:
        print("error: Out of GPU memory scoring these comments: pass fewer at a time.", file=sys.stderr)
        return 2
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    table = pd.DataFrame({"comment": [c if len(c) <= 40 else c[:39] + "…" for c in comments]})
    table["label"] = labels["label"]
    table["name"] = labels["label_name"]
    for i, name in enumerate(ensemble.schema.names):
        table[f"p({name})"] = [None if p is None else round(float(p[i]), 3) for p in labels["probs"]]
    table["status"] = labels["status"]
    with pd.option_context("display.max_colwidth", 60, "display.width", 200, "display.unicode.east_asian_width", True):
        print(table.to_string(index=False))
    # On stderr, so that stdout stays a table when it is piped into a file.
    print(
        f"({len(ensemble.models)} checkpoint(s) of {args.model} on {device.type}, precision "
        f"{str(dtype or torch.float32).removeprefix('torch.')}, max_length {max_length})",
        file=sys.stderr,
    )
    return 0


def read_lines(data: bytes, encoding: str | None) -> list[str]:
    """Comments piped in, one a line, decoded by the rule of .txt inputs: GBK from a Chinese Windows console is read,
    a pipe both GB18030 and Big5 could be is not guessed at."""
    from weibolabel.data.formats import choose_encoding

    if encoding is None:
        encoding = choose_encoding(lambda: iter([data]), lambda _: None, "the comments on standard input")
    try:
        text = data.decode(encoding)
    except (UnicodeDecodeError, LookupError) as error:
        raise UserError(f"the comments on standard input are not {encoding} text ({error}); fix --encoding.") from None
    lines = text.split("\n")
    return [line.rstrip("\r") for line in (lines[:-1] if lines[-1] == "" else lines)]


if __name__ == "__main__":
    sys.exit(main())

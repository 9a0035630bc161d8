"""python -m weibolabel.model.demo DIR [--hidden_size 128 --num_layers 2]: build the offline demo encoder."""

import argparse

from weibolabel.model.loading import build_demo_model

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("output_dir")
    parser.add_argument("--hidden_size", type=int, default=128)
    parser.add_argument("--num_layers", type=int, default=2)
    parser.add_argument("--num_heads", type=int, default=2)
    parser.add_argument("--intermediate_size", type=int, default=512)
    path = build_demo_model(**vars(parser.parse_args()))
    print(f"from-scratch demo BERT (random weights, bert-base-chinese tokenizer) written to {path}")

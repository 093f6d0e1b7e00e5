"""`visionline annotations`: make a generated dataset, export it to annotation tools, read it
back."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from visionline.annotations import FORMATS, export_dataset, export_labels, import_labels
from visionline.synthetic import LineGenerator
from visionline.synthetic.dataset import write_dataset

app = typer.Typer(
    help="Export labelled frames to annotation tools and read corrected labels back.",
    no_args_is_help=True,
)
console = Console()


def format_check(formats: Sequence[str]) -> Callable[[str], str]:
    """A ``--format`` callback that takes one of ``formats`` and names them when it refuses."""

    def check(fmt: str) -> str:
        if fmt not in formats:
            raise typer.BadParameter(f"unknown format {fmt!r}; choose one of {', '.join(formats)}")
        return fmt

    return check


Format = Annotated[
    str,
    typer.Option("--format", callback=format_check(FORMATS), help=f"One of: {', '.join(FORMATS)}."),
]


@app.command()
def generate(
    out: Annotated[Path, typer.Option(help="Folder for frames/, truth/, parts.json, meta.json.")],
    frames: Annotated[int, typer.Option(min=1, help="How many frames, from index 0.")] = 100,
    seed: Annotated[int, typer.Option(help="Generator seed: same seed, same frames.")] = 0,
    width: Annotated[int, typer.Option(min=16)] = 1280,
    height: Annotated[int, typer.Option(min=16)] = 720,
    defect_rate: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of defective parts.")
    ] = 0.3,
) -> None:
    """Render a seeded synthetic conveyor dataset with ground truth."""
    generator = LineGenerator(seed, (width, height), defect_rate=defect_rate)
    written = write_dataset(generator, out, frames)
    console.print(f"wrote {written} frames to {out}")


@app.command("export")
def export_command(
    fmt: Format,
    out: Annotated[Path, typer.Option(help="Folder to write images and annotations to.")],
    dataset: Annotated[
        Path | None, typer.Option(exists=True, file_okay=False, help="A generated dataset folder.")
    ] = None,
    samples: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            file_okay=False,
            help="Frames the inspect worker kept for labelling (<stack state>/samples): their "
            "predictions become pre-annotations to correct.",
        ),
    ] = None,
    parts: Annotated[bool, typer.Option(help="Also label whole parts, as class 'part'.")] = False,
) -> None:
    """Write a dataset's defects (and optionally parts) in an annotation tool's format."""
    if (dataset is None) == (samples is None):
        raise typer.BadParameter("give exactly one of --dataset and --samples")
    if samples is not None:
        from visionline.inspection.samples import sample_labels  # supervision: seconds to import

        labels = sample_labels(samples, include_parts=parts)
        export_labels(labels, samples / "frames", fmt, out)
    else:
        assert dataset is not None  # exactly one of the two, checked above
        labels = export_dataset(dataset, fmt, out, include_parts=parts)
    count = sum(len(image.objects) for image in labels.images)
    console.print(f"wrote {len(labels.images)} images, {count} objects as {fmt} to {out}")


@app.command("import")
def import_command(
    fmt: Format,
    source: Annotated[Path, typer.Option(exists=True, help="Folder laid out as export writes it.")],
    out: Annotated[Path, typer.Option(help="JSON file for the neutral label set.")],
) -> None:
    """Read (corrected) labels in a tool's format and write them as the neutral JSON label set."""
    labels = import_labels(fmt, source)
    labels.write(out)
    count = sum(len(image.objects) for image in labels.images)
    console.print(f"read {len(labels.images)} images, {count} objects from {source} into {out}")

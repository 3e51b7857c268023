"""The command line: a thin click layer over the library. Every command has a Python twin."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from neuronattack.errors import NeuronAttackError

console = Console(stderr=True)


class Group(click.Group):
    """Turns a ``NeuronAttackError`` into one line on stderr and exit status 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except NeuronAttackError as error:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            console.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
            sys.exit(2)
        except KeyboardInterrupt:
            console.print("interrupted; rerun the same command to resume where it stopped.")
            sys.exit(130)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.version_option(package_name="neuronattack")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Find and produce semantic adversarial images for CLIP by reading its neurons.

    \b
    Typical flow:
      neuronattack analyze --clip ViT-B-32:openai --images ~/imagenet-sample --out outputs/b32
    """
    ctx.obj = {"debug": debug}


def parse_blocks(words: tuple[str, ...]) -> tuple[int, ...]:
    try:
        return tuple(int(word) for word in words)
    except ValueError:
        raise NeuronAttackError(
            f"--layers takes block numbers, e.g. --layers 8 9 10; got {' '.join(words)!r}."
        ) from None


@main.command()
@click.option("--clip", "clip_spec", default="ViT-B-32:openai", show_default=True,
              help="CLIP to analyse: ARCH:TAG (ViT-B-32:openai), ARCH:/path/ckpt, hf-hub:ORG/NAME, "
                   "local-dir:PATH, or random:ARCH (random weights, for trying things offline).")
@click.option("--images", "image_dir", required=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Folder of images, searched recursively; ImageNet-style class folders work.")
@click.option("--layers", "first_layer", type=int, default=None,
              help="Blocks whose neurons to analyse, e.g. --layers 8 9 10 "
                   "[default: the three before the last].")
# click options take a fixed number of values; the rest of "--layers 8 9 10" lands here.
@click.argument("more_layers", nargs=-1, metavar="")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder; rerunning with the same folder resumes an interrupted run.")
@click.option("--every", default=1, show_default=True, help="Use every K-th image.")
@click.option("--limit", type=int, default=None, help="Use at most N images (after --every).")
@click.option("--top-k", default=100, show_default=True,
              help="Images per neuron for the rank-one fit; the k-th norm is the threshold.")
@click.option("--convention", type=click.Choice(["centred", "reference"]), default="centred",
              show_default=True,
              help="How LayerNorm means and biases are split: 'reference' reproduces the papers' "
                   "code number for number.")
@click.option("--batch-size", default=32, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, ...")
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default="fp32",
              show_default=True, help="dtype of the traced pass; statistics are always fp32/fp64.")
@click.option("--workers", default=0, show_default=True, help="Image-decoding worker processes.")
@click.option("--overwrite", is_flag=True, help="Discard an existing analysis in --out.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
def analyze(clip_spec, image_dir, first_layer, more_layers, out_dir, every, limit, top_k,
            convention, batch_size, device, precision, workers, overwrite, as_json) -> None:
    """Fit every neuron's second-order direction over an image set.

    For each neuron of the chosen blocks: its effect through later attention heads on the image
    embedding, over every image; the top-k images by effect size; the rank-one direction of those
    effects and how much variance it explains. Writes OUT/directions.safetensors and OUT/meta.json.

    \b
    Example:
      neuronattack analyze --clip ViT-B-32:openai --images ~/imagenet-5k \\
          --layers 8 9 10 --out outputs/vit-b-32
    """
    from neuronattack.imagesets import scan_images
    from neuronattack.models import load_clip
    from neuronattack.neurons.analysis import (
        AnalysisSettings,
        check_layers,
        check_precision,
        default_layers,
        pick_device,
    )
    from neuronattack.neurons.analysis import analyze as run_analysis

    if first_layer is None and more_layers:
        raise NeuronAttackError("Put block numbers after --layers, e.g. --layers 8 9 10.")
    image_set = scan_images(image_dir, every=every, limit=limit)
    target = pick_device(device)
    check_precision(precision, target)
    clip = load_clip(clip_spec, device=target)
    blocks = len(clip.model.visual.transformer.resblocks)
    layers = check_layers((first_layer, *parse_blocks(more_layers)), blocks) \
        if first_layer is not None else default_layers(blocks)
    console.print(f"{clip.spec}: blocks {', '.join(map(str, layers))} over "
                  f"{image_set.describe()} on {target}", soft_wrap=True)
    result = run_analysis(
        clip, image_set, out_dir,
        AnalysisSettings(layers=tuple(layers), convention=convention, top_k=top_k,
                         precision=precision),
        batch_size=batch_size, device=str(target), num_workers=workers, overwrite=overwrite,
    )
    summary = result.meta["summary"]
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    table = Table(title=f"Second-order directions ({result.meta['images_used']:,} images)")
    for header in ("block", "neurons", "significant", "mean var. explained", "median threshold"):
        table.add_column(header, justify="right")
    for row in summary:
        table.add_row(str(row["layer"]), f"{row['neurons']:,}", f"{row['significant']:,}",
                      f"{row['mean_variance_explained']:.1%}",
                      f"{row['median_threshold_relative']:.2%} of ‖rep‖")
    Console().print(table)
    skipped = result.meta.get("images_skipped", [])
    if skipped:
        console.print(f"{len(skipped):,} unreadable image(s) skipped, e.g. {skipped[0]}")
    console.print(f"wrote {out_dir / 'directions.safetensors'}")

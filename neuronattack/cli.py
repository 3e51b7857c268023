"""The command line: a thin click layer over the library. Every command has a Python twin."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
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
            # escape: messages quote TOML tables ("[run] device") that rich would take as markup
            console.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False,
                          soft_wrap=True)
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
    Start here (offline, CPU, about half a minute; a toy world where every number is real):
      neuronattack demo
    \b
    Typical flow with real models:
      neuronattack analyze --clip ViT-B-32:openai --images ~/imagenet-5k --out outputs/b32
      neuronattack neurons top --atlas outputs/b32 --layer 9
      neuronattack attack cat dog --atlas outputs/b32 --n 32
      neuronattack campaign prompts/campaigns/example.toml
      neuronattack export outputs/campaigns/cifar10-b32 --format imagefolder
      neuronattack report outputs/campaigns/cifar10-b32
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
@click.option("--words", default="common:30000", show_default=True,
              help="Vocabulary for the word decompositions: common[:N][:clean] (the N most "
                   "frequent English words), a text file with one word per line, or 'none'.")
@click.option("--nonzeros", default=128, show_default=True, help="Words per neuron.")
@click.option("--solver", type=click.Choice(["omp", "nn-lasso"]), default="omp",
              show_default=True, help="Sparse coder: OMP (the paper's) or non-negative Lasso.")
@click.option("--overwrite", is_flag=True, help="Discard an existing analysis in --out.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
def analyze(clip_spec, image_dir, first_layer, more_layers, out_dir, every, limit, top_k,
            convention, batch_size, device, precision, workers, words, nonzeros, solver,
            overwrite, as_json) -> None:
    """Build the neuron atlas of a CLIP over an image set.

    For each neuron of the chosen blocks: its effect through later attention heads on the image
    embedding, over every image; the top-k images by effect size; the rank-one direction of those
    effects and how much variance it explains; then that direction as a sparse sum of words.
    Writes OUT/directions.safetensors, OUT/atlas.safetensors and their JSON records; browse the
    result with `neuronattack neurons`.

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
    summary = [dict(row) for row in result.meta["summary"]]
    if words != "none":
        from neuronattack.neurons.atlas import ensure_atlas

        atlas = ensure_atlas(out_dir, clip, words, nonzeros, solver, show_progress=not as_json)
        for row in summary:
            row["mean_word_cosine"] = float(atlas.codes[row["layer"]].reconstruction_cosine.mean())
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    table = Table(title=f"Second-order directions ({result.meta['images_used']:,} images)")
    headers = ["block", "neurons", "significant", "mean var. explained", "median threshold"]
    for header in headers + (["word recon. cos"] if words != "none" else []):
        table.add_column(header, justify="right")
    for row in summary:
        cells = [str(row["layer"]), f"{row['neurons']:,}", f"{row['significant']:,}",
                 f"{row['mean_variance_explained']:.1%}",
                 f"{row['median_threshold_relative']:.2%} of ‖rep‖"]
        if "mean_word_cosine" in row:
            cells.append(f"{row['mean_word_cosine']:.3f}")
        table.add_row(*cells)
    Console().print(table)
    skipped = result.meta.get("images_skipped", [])
    if skipped:
        console.print(f"{len(skipped):,} unreadable image(s) skipped, e.g. {skipped[0]}")
    console.print(f"wrote {out_dir}; browse it with `neuronattack neurons top --atlas {out_dir}`")


atlas_option = click.option(
    "--atlas", "atlas_dir", required=True, envvar="NEURONATTACK_ATLAS",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Folder written by `neuronattack analyze` (or set NEURONATTACK_ATLAS).")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")


@main.group()
def neurons() -> None:
    """Browse an atlas: what each neuron writes, in words."""


@neurons.command()
@click.argument("neuron")
@atlas_option
@click.option("--words", "n_words", default=20, show_default=True, help="Words to list.")
@json_option
def show(neuron, atlas_dir, n_words, as_json) -> None:
    """One neuron, named BLOCK.INDEX (e.g. 9.1234): its words, variance explained, top images."""
    from neuronattack.neurons.atlas import Atlas, parse_neuron

    card = Atlas.load(atlas_dir).card(*parse_neuron(neuron), n_words=n_words)
    if as_json:
        click.echo(json.dumps(card.as_dict(), indent=2))
        return
    out = Console()
    out.print(f"[bold]neuron {card.name}[/]  variance explained {card.variance_explained:.1%}  "
              f"threshold {card.threshold:.4g}  "
              f"word reconstruction cos {card.reconstruction_cosine:.3f}")
    out.print("  " + "  ".join(f"{'+' if coef >= 0 else '−'}{word} ({abs(coef):.3f})"
                               for word, coef in card.words), highlight=False)
    if card.top_images:
        out.print(f"top images: {', '.join(card.top_images[:5])}"
                  + (f" (+{len(card.top_images) - 5} more)" if len(card.top_images) > 5 else ""),
                  highlight=False)


@neurons.command()
@click.argument("word")
@atlas_option
@click.option("--n", "count", default=20, show_default=True, help="Neurons to list.")
@json_option
def search(word, atlas_dir, count, as_json) -> None:
    """Which neurons write WORD, strongest positive coefficient first."""
    from neuronattack.neurons.atlas import Atlas

    hits = Atlas.load(atlas_dir).search(word)[:count]
    if as_json:
        click.echo(json.dumps([{"neuron": f"{layer}.{neuron}", "coefficient": coef, "rank": rank}
                               for layer, neuron, coef, rank in hits], indent=2))
        return
    if not hits:
        console.print(f"no neuron of this atlas uses '{word}'")
        return
    table = Table(title=f"neurons writing '{word}'")
    for header in ("neuron", "coefficient", "rank among its words"):
        table.add_column(header, justify="right")
    for layer, neuron, coef, rank in hits:
        table.add_row(f"{layer}.{neuron}", f"{coef:+.4f}", str(rank + 1))
    Console().print(table)


@neurons.command()
@atlas_option
@click.option("--layer", type=int, required=True, help="Block to rank.")
@click.option("--by", type=click.Choice(["threshold", "variance", "reconstruction"]),
              default="threshold", show_default=True,
              help="Effect size (k-th largest norm), variance explained by the rank-one direction, "
                   "or cosine of the word reconstruction.")
@click.option("--n", "count", default=20, show_default=True, help="Neurons to list.")
@click.option("--words", "n_words", default=6, show_default=True, help="Words per neuron.")
@json_option
def top(atlas_dir, layer, by, count, n_words, as_json) -> None:
    """The strongest neurons of a block with their leading words."""
    from neuronattack.neurons.atlas import Atlas

    atlas = Atlas.load(atlas_dir)
    cards = [atlas.card(layer, neuron, n_words=n_words) for neuron in atlas.top(layer, by, count)]
    if as_json:
        click.echo(json.dumps([card.as_dict() for card in cards], indent=2))
        return
    table = Table(title=f"block {layer}, by {by}")
    for header in ("neuron", "threshold", "var. explained", "word cos", "words"):
        table.add_column(header, justify="right" if header != "words" else "left")
    for card in cards:
        table.add_row(card.name, f"{card.threshold:.4g}", f"{card.variance_explained:.1%}",
                      f"{card.reconstruction_cosine:.3f}",
                      " ".join(f"{'+' if c >= 0 else '−'}{w}" for w, c in card.words))
    Console().print(table)


@main.command("verify")
@atlas_option
@click.option("--images", "image_dir", required=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Labelled images: one folder per class (ImageNet WNIDs or class names).")
@click.option("--class-names", "names_file", type=click.Path(dir_okay=False, exists=True,
                                                             path_type=Path),
              help="File of 'FOLDER<TAB>class name' lines overriding folder names.")
@click.option("--every", default=1, show_default=True, help="Use every K-th image.")
@click.option("--limit", type=int, default=None, help="Use at most N images (after --every).")
@click.option("--batch-size", default=64, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--workers", default=0, show_default=True, help="Image-decoding worker processes.")
@json_option
def verify_command(atlas_dir, image_dir, names_file, every, limit, batch_size, device, workers,
                   as_json) -> None:
    """Check the atlas against the model: zero-shot accuracy when each analysed block's
    second-order effects are mean-ablated, or replaced by their rank-one or word reconstructions.

    The paper's finding to compare with (ViT-B-32, blocks 8–10): mean-ablation hurts, the
    rank-one and word reconstructions keep accuracy near the baseline.
    """
    from neuronattack.imagesets import scan_images
    from neuronattack.models import load_clip
    from neuronattack.models.zeroshot import resolve_class_names
    from neuronattack.neurons.analysis import pick_device
    from neuronattack.neurons.atlas import Atlas
    from neuronattack.neurons.verify import MODES, verify

    atlas = Atlas.load(atlas_dir)
    image_set = scan_images(image_dir, every=every, limit=limit)
    if not image_set.classes:
        raise NeuronAttackError(
            f"{image_dir} has no class folders; verify needs one folder per class."
        )
    target = pick_device(device)
    clip = load_clip(atlas.meta["model"], device=target)
    names = resolve_class_names(image_set.classes, names_file)
    report = verify(clip, atlas, image_set, names, batch_size, str(target), workers,
                    show_progress=not as_json)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    table = Table(title=f"zero-shot accuracy, {report['images']:,} images, "
                        f"{report['classes']} classes")
    table.add_column("blocks replaced")
    for mode in MODES:
        table.add_column(mode, justify="right")
    for scope in report["accuracy"]["baseline"]:
        table.add_row(scope, *(f"{report['accuracy'][mode][scope]:.1%}" for mode in MODES))
    Console().print(table)


@main.command()
@click.argument("source")
@click.argument("target")
@click.option("--n", "count", default=32, show_default=True, help="Images per arm.")
@click.option("--clip", "clip_spec", default="ViT-B-32:openai", show_default=True,
              help="The CLIP to attack (same forms as `analyze --clip`).")
@click.option("--atlas", "atlas_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Atlas folder [default: outputs/atlas/<clip>]; built first if missing.")
@click.option("--images", "image_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Images to analyse with when the atlas does not exist yet.")
@click.option("--generator", "generator_spec", default="sd-turbo", show_default=True,
              help="sd-turbo, sdxl-turbo, sd15, flux-schnell, tiny (random weights, offline), "
                   "a hub repo id or a local diffusers folder.")
@click.option("--writer", "writer_spec", default="template", show_default=True,
              help="template (offline) or hf:REPO_OR_PATH (a local or cached text-generation LLM).")
@click.option("--judge", "judge_specs", multiple=True,
              help="Extra CLIP to judge every image with (transfer); repeatable.")
@click.option("--checker", default="auto", show_default=True,
              help="Validity checker: auto (a different CLIP), clip:SPEC, toy or none.")
@click.option("--classes", "classes_spec", default="imagenet", show_default=True,
              help="Class set for zero-shot judging: imagenet, cifar10, toy or a file of names.")
@click.option("--arms", default=",".join(("method", "random-neurons", "similar-words",
                                          "source-only")), show_default=True,
              help="Comma-separated: the method and the baselines, all with the same seeds.")
@click.option("--neurons", "n_neurons", default=100, show_default=True,
              help="Neurons picked by |r·δ|.")
@click.option("--words", "n_words", default=50, show_default=True, help="Words kept per arm.")
@click.option("--seed", default=0, show_default=True)
@click.option("--negative-prompt", default=None,
              help="[default: text, letters, words, … — against typographic attacks]")
@click.option("--block-list", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="File of words never to use (one per line).")
@click.option("--similarity-percentile", default=99.0, show_default=True,
              help="Drop words whose CLIP similarity to the target is above this percentile of "
                   "the vocabulary.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Output folder [default: outputs/attacks/<source>-<target>]; reruns resume.")
@click.option("--batch-size", default=8, show_default=True, help="Images rendered at once.")
@click.option("--device", default="auto", show_default=True)
@json_option
def attack(source, target, count, clip_spec, atlas_dir, image_dir, generator_spec, writer_spec,
           judge_specs, checker, classes_spec, arms, n_neurons, n_words, seed, negative_prompt,
           block_list, similarity_percentile, out_dir, batch_size, device, as_json) -> None:
    """Make images of SOURCE that CLIP takes for TARGET, from the words its neurons write.

    Picks the neurons whose directions push from SOURCE toward TARGET, keeps their words that are
    unrelated to TARGET, writes sentences that show SOURCE with those words, renders them and
    judges them; the baselines (random neurons, words similar to TARGET, SOURCE alone) get the same
    budget and seeds. Writes images with their prompts, results.jsonl and summary.html.

    \b
    Examples:
      neuronattack attack cat dog --images ~/imagenet-5k          # weights download on first use
      neuronattack attack cat dog --clip random:ViT-B-32 --images DIR --generator tiny \\
          --classes cifar10 --n 4                                 # offline; images are noise
    """
    from neuronattack.attack.run import ARMS, DEFAULT_NEGATIVE, AttackSettings, run_attack, slug
    from neuronattack.attack.setup import build_context, load_class_names
    from neuronattack.attack.writers import load_writer
    from neuronattack.models import load_clip, spec_slug
    from neuronattack.models.generators import load_generator
    from neuronattack.neurons.analysis import pick_device
    from neuronattack.neurons.atlas import Atlas

    arm_list = tuple(arm.strip() for arm in arms.split(",") if arm.strip())
    unknown = [arm for arm in arm_list if arm not in ARMS]
    if unknown or not arm_list:
        raise NeuronAttackError(f"--arms takes a comma-separated list from {', '.join(ARMS)}.")
    class_names = load_class_names(classes_spec)
    target_device = pick_device(device)
    writer = load_writer(writer_spec)
    clip = load_clip(clip_spec, device=target_device)
    atlas_dir = atlas_dir or Path("outputs") / "atlas" / spec_slug(clip.spec)
    if not (atlas_dir / "atlas.json").exists():
        if image_dir is None:
            raise NeuronAttackError(
                f"No atlas at {atlas_dir}; pass --images DIR to analyse {clip.spec} first, or "
                "--atlas to use an existing one."
            )
        ensure_analysis(clip, image_dir, atlas_dir, target_device)
    atlas = Atlas.load(atlas_dir)
    if atlas.meta["model"] != clip.spec:
        raise NeuronAttackError(f"The atlas in {atlas_dir} was built for {atlas.meta['model']}, "
                                f"not {clip.spec}.")
    generator = load_generator(generator_spec, device=str(target_device))
    context = build_context(clip, atlas, generator, writer, class_names, tuple(judge_specs),
                            checker, target_device, batch_size, show_progress=not as_json)
    settings = AttackSettings(
        source=source, target=target, n=count, arms=arm_list, n_neurons=n_neurons,
        n_words=n_words, seed=seed,
        negative_prompt=DEFAULT_NEGATIVE if negative_prompt is None else negative_prompt,
        similarity_percentile=similarity_percentile,
        block_list=tuple(read_block_list(block_list)),
    )
    out_dir = out_dir or Path("outputs") / "attacks" / f"{slug(source)}-{slug(target)}"
    records = run_attack(context, settings, out_dir, show_progress=not as_json)
    from neuronattack.attack.run import summarize

    summary = summarize(records)
    if as_json:
        click.echo(json.dumps({"out": str(out_dir), "arms": summary}, indent=2))
        return
    print_arm_table(summary, f"{source} → {target}")
    console.print(f"wrote {out_dir / 'summary.html'}")


def read_block_list(path: Path | None) -> list[str]:
    from neuronattack.neurons.vocabulary import read_word_list

    return read_word_list(path) if path else []


def ensure_analysis(clip, image_dir: Path, out_dir: Path, device) -> None:
    """Analyse with the defaults (the three blocks before the last, 100 images per neuron)."""
    from neuronattack.imagesets import scan_images
    from neuronattack.neurons.analysis import AnalysisSettings, analyze, default_layers
    from neuronattack.neurons.atlas import ensure_atlas

    blocks = len(clip.model.visual.transformer.resblocks)
    console.print(f"no atlas yet: analysing {clip.spec} over {image_dir} into {out_dir}")
    analyze(clip, scan_images(image_dir), out_dir, AnalysisSettings(layers=default_layers(blocks)),
            device=str(device))
    ensure_atlas(out_dir, clip)


def print_arm_table(summary: dict, title: str) -> None:
    table = Table(title=title)
    for header in ("arm", "rendered", "fooled", "95% CI", "valid", "fooled & valid", "95% CI"):
        table.add_column(header, justify="right" if header != "arm" else "left")

    def pct(value):
        return "–" if value is None else f"{value:.1%}"

    for arm, row in summary.items():
        success, valid = row["success"], row["valid_success"]
        table.add_row(arm, str(row["images"] - row["failed_renders"]), pct(success["rate"]),
                      f"{pct(success['ci95'][0])}–{pct(success['ci95'][1])}", str(row["valid"]),
                      pct(valid["rate"]), f"{pct(valid['ci95'][0])}–{pct(valid['ci95'][1])}")
    Console().print(table)


@main.command("campaign")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Run folder [default: the config's [run] out].")
@click.option("--device", default=None, help="Override [run] device: auto, cpu, cuda, cuda:1.")
@click.option("--check", is_flag=True, help="Validate the config, print the plan and stop.")
@json_option
def campaign_command(config, out_dir, device, check, as_json) -> None:
    """Attack many class pairs with many seeds from one TOML file; resumable and sharded.

    The whole file is checked first and every problem is listed with its line and a fix. Each
    (pair, seed) unit runs into RUN/units/PAIR/sSEED; a killed run (Ctrl-C, SIGKILL, a lost
    machine) resumes where it stopped when the same command is run again, and its results equal
    an uninterrupted run's. The last step merges every unit into RUN/results.jsonl and
    RUN/summary.json. Example configs: prompts/campaigns/.

    \b
    Examples:
      neuronattack campaign prompts/campaigns/example.toml
      accelerate launch --num_processes 4 -m neuronattack campaign prompts/campaigns/example.toml
    """
    from neuronattack.campaign.config import load_campaign
    from neuronattack.campaign.runner import plan_units, run_campaign

    campaign = load_campaign(config, out_dir, device)
    if check:
        units = plan_units(campaign)
        images = len(units) * campaign.n * len(campaign.arms)
        console.print(f"{config} is valid: {len(campaign.pairs)} pairs × {len(campaign.seeds)} "
                      f"seeds = {len(units)} units, {images:,} images, into {campaign.out}",
                      highlight=False, soft_wrap=True)
        return
    summary = run_campaign(campaign, show_progress=not as_json)
    if summary is None:  # a secondary process under accelerate: the main one reports
        return
    if as_json:
        click.echo(json.dumps({"out": str(campaign.out), **summary}, indent=2))
        return
    print_arm_table(summary["arms"], f"{len(campaign.pairs)} pairs, all seeds pooled")
    console.print(f"wrote {campaign.out / 'results.jsonl'}; next: neuronattack report "
                  f"{campaign.out}", highlight=False)


@main.command("merge")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@json_option
def merge_command(run_dir, as_json) -> None:
    """Merge a campaign's units into RUN/results.jsonl and RUN/summary.json (idempotent).

    The campaign does this as its last step; run it by hand on a run that is cut short or still
    going (it merges what is there and lists the unfinished units), or after copying shards
    written on other machines into one folder.
    """
    from neuronattack.campaign.runner import merge_run

    summary = merge_run(run_dir)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    print_arm_table(summary["arms"], f"{run_dir}: {summary['complete']} of {summary['units']} "
                                     "units complete")
    for folder in summary["incomplete"]:
        console.print(f"incomplete: {folder}", highlight=False)


@main.command("export")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--format", "format_", type=click.Choice(["imagefolder", "webdataset"]),
              default="imagefolder", show_default=True,
              help="imagefolder (loads with datasets.load_dataset) or webdataset (tar shards).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Dataset folder [default: RUN/export-FORMAT].")
@click.option("--split-by", type=click.Choice(["outcome", "pair"]), default="outcome",
              show_default=True,
              help="Splits by outcome (fooled/valid) or by class pair; the other is a column.")
@click.option("--shard-size", type=click.IntRange(min=1), default=1000, show_default=True,
              help="webdataset: samples per tar shard.")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty --out folder.")
@json_option
def export_command(run_dir, format_, out_dir, split_by, shard_size, overwrite, as_json) -> None:
    """Publish an attack or campaign folder as a test set with full provenance.

    Every image keeps its generation fields (prompt, negative prompt, seed, steps, guidance, size,
    model, revision) and ours (CLIP, atlas hash, words, neurons, judge scores, validity verdict);
    classes.json maps labels to names and WordNet ids; README.md is the dataset card.
    """
    from neuronattack.campaign.export import export_run

    out_dir = out_dir or run_dir / f"export-{format_}"
    result = export_run(run_dir, out_dir, format_, split_by, shard_size, overwrite)
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
        return
    for split, count in result.splits.items():
        console.print(f"{split}: {count:,} images")
    console.print(f"wrote {out_dir} ({result.failed:,} failed renders left out)")


@main.command("report")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              help="[default: RUN/report.html]")
@click.option("--per-pair", type=click.IntRange(min=0), default=12, show_default=True,
              help="Images per gallery (fooled, not fooled) for each pair.")
def report_command(run_dir, out_path, per_pair) -> None:
    """One static HTML page for an attack or campaign: rates with confidence intervals per pair
    and arm, galleries with sentences, neurons and words, and the transfer matrix."""
    from neuronattack.campaign.report import write_report

    console.print(f"wrote {write_report(run_dir, out_path, per_pair)}")


@main.command()
@click.option("--fast", is_flag=True,
              help="400 scenes and 8 images per arm instead of 3,000 and 48 (~8 s, not ~30 s).")
@click.option("--out", "out_dir", default=Path("outputs/demo"), show_default=True,
              type=click.Path(file_okay=False, path_type=Path))
@json_option
def demo(fast, out_dir, as_json) -> None:
    """The whole method, offline, on a CPU, in a toy world where everything is real.

    A small CLIP trained here on drawn scenes (with a few planted shortcuts, e.g. ships on water)
    is analysed, its neurons decomposed into the world's words, and class pairs are attacked with
    the method and the baselines. The toy renderer draws exactly what each sentence says, so the
    rates below are real measurements. Results: OUT/demo.json, OUT/attacks/*/summary.html.
    """
    from neuronattack.demo import FAST, FULL, run_demo

    result = run_demo(out_dir, FAST if fast else FULL, show_progress=not as_json)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    print_demo_tables(result)
    console.print(f"wrote {out_dir / 'demo.json'} and {out_dir / 'attacks'}/*/summary.html")


def print_demo_tables(result: dict) -> None:
    def cell(rate: dict) -> str:
        low, high = rate["ci95"]
        return f"{rate['rate']:.0%} [{low:.0%}–{high:.0%}]" if rate["rate"] is not None else "–"

    arms = ("method", "random-neurons", "similar-words", "source-only")
    table = Table(title="fooled & valid, per image rendered (95% Wilson interval)")
    table.add_column("pair")
    for arm in arms:
        table.add_column(arm, justify="right")
    for pair, summary in result["pairs"].items():
        table.add_row(pair, *(cell(summary[arm]["valid_success"]) for arm in arms))
    Console().print(table)
    cues = Table(title="planted cues: is the cue's word among the method's words for its class?")
    for header in ("class", "cue", "planted P", "recovered", "rank / why not"):
        cues.add_column(header)
    for row in result["cues"]:
        why = str(row.get("rank") or row.get("dropped_because") or "not selected")
        cues.add_row(row["class"], row["cue"], f"{row['probability']:.2f}",
                     "yes" if row["recovered"] else "no", why)
    Console().print(cues)

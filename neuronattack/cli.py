"""The command line: a thin click layer over the library. Every command has a Python twin."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.table import Table
from rich.text import Text

from neuronattack import pipeline, validation
from neuronattack.attack.settings import (
    ARMS,
    DEFAULT_CHECKER,
    DEFAULT_CLASSES,
    DEFAULT_GENERATOR,
    DEFAULT_WRITER,
    RENDER_BATCH,
    AttackSettings,
)
from neuronattack.errors import NeuronAttackError
from neuronattack.neurons.settings import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_NONZEROS,
    DEFAULT_VOCABULARY,
    PRECISION_NAMES,
    SOLVERS,
    AnalysisSettings,
)
from neuronattack.outdir import ALLOW_FOREIGN
from neuronattack.progress import stderr_console, stdout_console, warnings_to_console

console = stderr_console()
# The CLIP every command analyses, attacks or maps unless --clip names another.
DEFAULT_CLIP = "ViT-B-32:openai"


class Group(click.Group):
    """Turns a ``NeuronAttackError`` or a bad option into one line on stderr and exit status 2."""

    def invoke(self, ctx: click.Context):
        try:
            with warnings_to_console():
                return super().invoke(ctx)
        except NeuronAttackError as error:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            # Text, not markup: messages quote TOML tables ("[run] device") and paths
            console.print(Text("error: ", style="bold red") + Text(str(error)), soft_wrap=True)
            sys.exit(2)
        except click.UsageError as error:  # a subcommand's option that click could not parse
            command = error.ctx.command_path if error.ctx else ctx.command_path
            console.print(Text("error: ", style="bold red")
                          + Text(f"{error.format_message()} (see {command} --help)"),
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
@click.option("--clip", "clip_spec", default=DEFAULT_CLIP, show_default=True,
              help="CLIP to analyse: ARCH:TAG (ViT-B-32:openai), ARCH:/path/ckpt, hf-hub:ORG/NAME, "
                   "local-dir:PATH, hf:ORG/NAME or hf:PATH (a transformers CLIPModel), or "
                   "random:ARCH (random weights, for trying things offline).")
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
@click.option("--top-k", default=AnalysisSettings.top_k, show_default=True,
              help="Images per neuron for the rank-one fit; the k-th norm is the threshold.")
@click.option("--convention", type=click.Choice(["centred", "reference"]),
              default=AnalysisSettings.convention, show_default=True,
              help="How LayerNorm means and biases are split: 'reference' reproduces the papers' "
                   "code number for number.")
@click.option("--batch-size", default=DEFAULT_BATCH_SIZE, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, ...")
@click.option("--precision", type=click.Choice(PRECISION_NAMES),
              default=AnalysisSettings.precision, show_default=True,
              help="dtype of the traced pass; statistics are always fp32/fp64.")
@click.option("--workers", default=0, show_default=True, help="Image-decoding worker processes.")
@click.option("--words", default=DEFAULT_VOCABULARY, show_default=True,
              help="Vocabulary for the word decompositions: common[:N][:clean] (the N most "
                   "frequent English words), a text file with one word per line, or 'none'.")
@click.option("--nonzeros", default=DEFAULT_NONZEROS, show_default=True,
              help="Words per neuron.")
@click.option("--solver", type=click.Choice(SOLVERS), default=SOLVERS[0], show_default=True,
              help="Sparse coder: OMP (the paper's) or non-negative Lasso.")
@click.option("--overwrite", is_flag=True, help="Discard an existing analysis in --out.")
@click.option("--shard", "shard_text", default=None, metavar="I/N",
              help="Analyse shard I of N (0-based) into the same --out, e.g. one per job of a "
                   "cluster job array; all N run at once and shard 0 merges. Under `accelerate "
                   "launch` the shards are the launched processes. [default: 0/1]")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
def analyze(clip_spec, image_dir, first_layer, more_layers, out_dir, every, limit, top_k,
            convention, batch_size, device, precision, workers, words, nonzeros, solver,
            overwrite, shard_text, as_json) -> None:
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
      accelerate launch --num_processes 4 -m neuronattack analyze --clip ViT-B-32:openai \\
          --images ~/imagenet-train --out outputs/vit-b-32-train
    """
    from neuronattack.imagesets import scan_images
    from neuronattack.models import load_clip
    from neuronattack.models.clip import clip_spec_problem
    from neuronattack.neurons.analysis import (
        AnalysisSettings,
        check_layers,
        check_out,
        check_precision,
        check_settings,
        default_layers,
        pick_device,
    )
    from neuronattack.neurons.analysis import analyze as run_analysis
    from neuronattack.neurons.sharding import launched_device, launched_shard, parse_shard
    from neuronattack.neurons.vocabulary import vocabulary_spec_problem

    if first_layer is None and more_layers:
        raise NeuronAttackError("Put block numbers after --layers, e.g. --layers 8 9 10.")
    blocks_asked = (first_layer, *parse_blocks(more_layers)) if first_layer is not None else None
    # Everything a user can get wrong, refused before any model loads or any pass starts.
    check_settings(AnalysisSettings(layers=blocks_asked or (0,), convention=convention,
                                    top_k=top_k, precision=precision), batch_size, workers)
    validation.require_all([("--clip", clip_spec, clip_spec_problem),
                            ("--words", words, vocabulary_spec_problem),
                            ("--nonzeros", nonzeros, validation.positive_int)])
    shard = parse_shard(shard_text) if shard_text is not None else launched_shard()
    check_out(out_dir, overwrite, shard)
    image_set = scan_images(image_dir, every=every, limit=limit)
    target = pick_device(launched_device(device))
    check_precision(precision, target)
    clip = load_clip(clip_spec, device=target)
    blocks = len(clip.model.visual.transformer.resblocks)
    layers = check_layers(blocks_asked, blocks) if blocks_asked else default_layers(blocks)
    console.print(f"{clip.spec}: blocks {', '.join(map(str, layers))} over "
                  f"{image_set.describe()} on {target}", soft_wrap=True)
    result = run_analysis(
        clip, image_set, out_dir,
        AnalysisSettings(layers=tuple(layers), convention=convention, top_k=top_k,
                         precision=precision),
        batch_size=batch_size, device=str(target), num_workers=workers, overwrite=overwrite,
        shard=shard,
    )
    if not shard.main:  # shard 0 builds the atlas and reports
        console.print(f"shard {shard.name} done; shard 0 wrote {out_dir}")
        return
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
    stdout_console().print(table)
    skipped = result.meta.get("images_skipped", [])
    if skipped:
        console.print(f"{len(skipped):,} unreadable image(s) skipped, e.g. {skipped[0]}")
    console.print(f"wrote {out_dir}; browse it with `neuronattack neurons top --atlas {out_dir}`")


class AtlasSource(click.ParamType):
    """``--atlas``: a folder, a packed atlas (`atlas pack`) or hf-hub:ORG/NAME, as a folder.

    A ``NeuronAttackError`` (a missing download, a damaged pack) leaves as the usual one line.
    """

    name = "ATLAS"

    def convert(self, value, param, ctx) -> Path:
        from neuronattack.neurons.share import resolve_atlas

        return value if isinstance(value, Path) else resolve_atlas(value)


atlas_option = click.option(
    "--atlas", "atlas_dir", required=True, envvar="NEURONATTACK_ATLAS", type=AtlasSource(),
    help="Folder written by `neuronattack analyze`, a packed atlas (.tar) or hf-hub:ORG/NAME "
         "(or set NEURONATTACK_ATLAS).")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")


def labelled_images_options(command):
    """The options of a zero-shot measurement over a labelled image set, shared by every such
    command (verify, ablate) so that their names, defaults and help stay one."""
    options = (
        click.option("--images", "image_dir", required=True,
                     type=click.Path(file_okay=False, path_type=Path),
                     help="Labelled images: one folder per class (ImageNet WNIDs or class "
                          "names)."),
        click.option("--class-names", "names_file",
                     type=click.Path(dir_okay=False, exists=True, path_type=Path),
                     help="File of 'FOLDER<TAB>class name' lines overriding folder names."),
        click.option("--every", default=1, show_default=True, help="Use every K-th image."),
        click.option("--limit", type=int, default=None,
                     help="Use at most N images (after --every)."),
        click.option("--batch-size", default=64, show_default=True),
        click.option("--device", default="auto", show_default=True),
        click.option("--workers", default=0, show_default=True,
                     help="Image-decoding worker processes."),
    )
    for option in reversed(options):
        command = option(command)
    return command
allow_foreign_out_option = click.option(
    ALLOW_FOREIGN, "allow_foreign_out", is_flag=True,
    help="Write into a non-empty --out that holds no neuronattack output: our files go beside "
         "the ones there, and none of them is deleted.")


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

    validation.require("--words", n_words, validation.positive_int)
    card = Atlas.load(atlas_dir).card(*parse_neuron(neuron), n_words=n_words)
    if as_json:
        click.echo(json.dumps(card.as_dict(), indent=2))
        return
    out = stdout_console()
    out.print(Text(f"neuron {card.name}", style="bold")
              + Text(f"  variance explained {card.variance_explained:.1%}  "
                     f"threshold {card.threshold:.4g}  "
                     f"word reconstruction cos {card.reconstruction_cosine:.3f}"))
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

    validation.require("--n", count, validation.positive_int)
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
    stdout_console().print(table)


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

    validation.require_all([("--n", count, validation.positive_int),
                            ("--words", n_words, validation.positive_int)])
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
    stdout_console().print(table)


@main.command("verify")
@atlas_option
@labelled_images_options
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

    validation.require_all([("--batch-size", batch_size, validation.positive_int),
                            ("--workers", workers, validation.non_negative_int),
                            ("--device", device, validation.device)])
    atlas = Atlas.load(atlas_dir)
    image_set = scan_images(image_dir, every=every, limit=limit)
    if not image_set.classes:
        loose = [path for path in image_set.paths if "/" not in path]
        if len(loose) < len(image_set):  # class folders, and files beside them
            raise NeuronAttackError(
                f"{image_dir} has class folders but also {len(loose):,} image(s) outside them "
                f"(e.g. {loose[0]}); verify needs every image in its class folder: move those "
                "into one or remove them."
            )
        raise NeuronAttackError(
            f"{image_dir} has no class folders; verify needs one folder per class."
        )
    target = pick_device(device)
    clip = load_clip(atlas.model, device=target)
    atlas.require_model(clip)  # the weights under that spec may have changed since
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
    stdout_console().print(table)


@main.command()
@click.argument("source")
@click.argument("target")
@click.option("--n", "count", default=AttackSettings.n, show_default=True, help="Images per arm.")
@click.option("--clip", "clip_spec", default=DEFAULT_CLIP, show_default=True,
              help="The CLIP to attack (same forms as `analyze --clip`).")
@click.option("--atlas", "atlas_dir", type=AtlasSource(),
              help="Atlas folder, packed atlas (.tar) or hf-hub:ORG/NAME [default: "
                   "outputs/atlas/<clip>]; a missing folder is built first.")
@click.option("--images", "image_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Images to analyse with when the atlas does not exist yet.")
@click.option("--generator", "generator_spec", default=DEFAULT_GENERATOR, show_default=True,
              help="sd-turbo, sdxl-turbo, sd15, flux-schnell, toy (the toy world's renderer), "
                   "tiny (random weights, offline), "
                   "a hub repo id or a local diffusers folder.")
@click.option("--writer", "writer_spec", default=DEFAULT_WRITER, show_default=True,
              help="template (offline) or hf:REPO_OR_PATH (a local or cached text-generation LLM).")
@click.option("--judge", "judge_specs", multiple=True,
              help="Extra CLIP to judge every image with (transfer); repeatable.")
@click.option("--checker", default=DEFAULT_CHECKER, show_default=True,
              help="Validity checker: auto (a different CLIP), clip:SPEC, toy or none.")
@click.option("--classes", "classes_spec", default=DEFAULT_CLASSES, show_default=True,
              help="Class set for zero-shot judging: imagenet, cifar10, toy or a file of names.")
@click.option("--arms", default=",".join(AttackSettings.arms), show_default=True,
              help="Comma-separated: the method and the baselines, all with the same seeds.")
@click.option("--keep-class-words", is_flag=True,
              help="Turn the class-word filter off: keep words that name another class of "
                   "--classes (they make the image a distractor attack).")
@click.option("--neurons", "n_neurons", default=AttackSettings.n_neurons, show_default=True,
              help="Neurons picked by |r·δ|.")
@click.option("--words", "n_words", default=AttackSettings.n_words, show_default=True,
              help="Words kept per arm.")
@click.option("--seed", default=AttackSettings.seed, show_default=True)
@click.option("--negative-prompt", default=AttackSettings.negative_prompt, show_default=True,
              help='What the generator steers away from (against typographic attacks); "" for '
                   "none.")
@click.option("--block-list", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="File of words never to use (one per line).")
@click.option("--similarity-percentile", default=AttackSettings.similarity_percentile,
              show_default=True,
              help="Drop words whose CLIP similarity to the target is above this percentile of "
                   "the vocabulary.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Output folder [default: outputs/attacks/<source>-<target>]; reruns resume.")
@click.option("--batch-size", default=RENDER_BATCH, show_default=True,
              help="Images rendered at once.")
@click.option("--device", default="auto", show_default=True)
@click.option("--why-maps/--no-why-maps", default=True, show_default=True,
              help="Write NAME-why.png beside each image: where it pulled toward the target.")
@allow_foreign_out_option
@json_option
def attack(source, target, count, clip_spec, atlas_dir, image_dir, generator_spec, writer_spec,
           judge_specs, checker, classes_spec, arms, keep_class_words, n_neurons, n_words, seed,
           negative_prompt, block_list, similarity_percentile, out_dir, batch_size, device,
           why_maps, allow_foreign_out, as_json) -> None:
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
      neuronattack attack horse airplane --clip toy --generator toy --checker toy \\
          --classes toy                                           # the toy world, ~1 min
    """
    from neuronattack.attack.run import check_out as check_attack_out
    from neuronattack.attack.run import resolve_pair, run_attack
    from neuronattack.attack.setup import checker_spec_problem, load_class_names
    from neuronattack.models import load_clip
    from neuronattack.models.clip import clip_spec_problem
    from neuronattack.models.generators import generator_spec_problem
    from neuronattack.neurons.analysis import check_out as check_analysis_out
    from neuronattack.neurons.analysis import pick_device
    from neuronattack.writing import writer_spec_problem

    arm_list = tuple(arm.strip() for arm in arms.split(",") if arm.strip())
    unknown = [arm for arm in arm_list if arm not in ARMS]
    if unknown or not arm_list:
        raise NeuronAttackError(f"--arms takes a comma-separated list from {', '.join(ARMS)}.")
    class_names = load_class_names(classes_spec)
    # Everything a user can get wrong, refused before any model loads (a typo in TARGET used to
    # surface after the atlas, the generator and 80,000 judge prompts).
    resolve_pair(class_names, source, target)
    validation.require_all([
        ("--n", count, validation.images_per_arm),
        ("--neurons", n_neurons, validation.positive_int),
        ("--words", n_words, validation.positive_int),
        ("--similarity-percentile", similarity_percentile, validation.percentile),
        ("--batch-size", batch_size, validation.positive_int),
        ("--clip", clip_spec, clip_spec_problem),
        ("--generator", generator_spec, generator_spec_problem),
        ("--writer", writer_spec, writer_spec_problem),
        ("--checker", checker, checker_spec_problem),
        ("--images", image_dir, validation.existing_folder),
        *(("--judge", judge, clip_spec_problem) for judge in judge_specs)])
    out_dir = out_dir or pipeline.attack_folder(source, target)
    check_attack_out(out_dir, allow_foreign_out)
    if atlas_dir is not None and image_dir is not None and not (atlas_dir / "atlas.json").exists():
        check_analysis_out(atlas_dir)  # it will be analysed into
    target_device = str(pick_device(device))
    clip = load_clip(clip_spec, device=target_device)
    atlas = pipeline.obtain_atlas(clip, atlas_dir, image_dir, target_device,
                                  show_progress=not as_json,
                                  options=("pass --images DIR", "--atlas"))
    context = pipeline.attack_context(
        clip, atlas, class_names, generator=generator_spec, writer=writer_spec,
        judges=judge_specs, checker=checker, device=target_device, render_batch=batch_size,
        class_set=classes_spec, why_maps=why_maps, show_progress=not as_json)
    settings = AttackSettings(
        source=source, target=target, n=count, arms=arm_list, n_neurons=n_neurons,
        n_words=n_words, seed=seed, negative_prompt=negative_prompt,
        similarity_percentile=similarity_percentile,
        block_list=tuple(read_block_list(block_list)), class_filter=not keep_class_words,
    )
    records = run_attack(context, settings, out_dir, show_progress=not as_json,
                         allow_foreign_out=allow_foreign_out)
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


def print_arm_table(summary: dict, title: str) -> None:
    """Per arm: the headline (valid, top-1 is the target, contextual), top-1 of any kind, the
    paper's binary test on valid images, and the margin shift against source-only."""
    table = Table(title=title)
    for header in ("arm", "rendered", "valid", "contextual top-1", "95% CI", "top-1 any kind",
                   "binary & valid", "margin shift"):
        table.add_column(header, justify="right" if header != "arm" else "left")

    def pct(value):
        return "–" if value is None else f"{value:.1%}"

    for arm, row in summary.items():
        headline, shift = row["contextual_top1"], row.get("margin_shift") or {}
        table.add_row(arm, str(row["images"] - row["failed_renders"]), str(row["valid"]),
                      pct(headline["rate"]),
                      f"{pct(headline['ci95'][0])}–{pct(headline['ci95'][1])}",
                      pct(row["top1"]["rate"]), pct(row["valid_success"]["rate"]),
                      "–" if shift.get("mean") is None else f"{shift['mean']:+.3f}")
    stdout_console().print(table)


@main.command("campaign")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Run folder [default: the config's [run] out].")
@click.option("--device", default=None, help="Override [run] device: auto, cpu, cuda, cuda:1.")
@click.option("--check", is_flag=True, help="Validate the config, print the plan and stop.")
@allow_foreign_out_option
@json_option
def campaign_command(config, out_dir, device, check, allow_foreign_out, as_json) -> None:
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
    from neuronattack.campaign.runner import check_out, describe_plan, run_campaign

    campaign = load_campaign(config, out_dir, device)
    check_out(campaign.out, allow_foreign_out)
    if check:
        plan = describe_plan(campaign)
        if as_json:
            click.echo(json.dumps(plan, indent=2))
            return
        models = [f"{role} {spec}" for role, specs in plan["models"].items()
                  for spec in (specs if isinstance(specs, list) else [specs]) if spec]
        console.print(f"{config} is valid: {plan['pairs']} pairs × {plan['seeds']} seeds = "
                      f"{plan['units']} units, {plan['images']:,} images, into {plan['out']}; "
                      f"models (downloaded on first use unless cached): {', '.join(models)}",
                      soft_wrap=True)
        return
    summary = run_campaign(campaign, show_progress=not as_json,
                           allow_foreign_out=allow_foreign_out)
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


@main.command("explain")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--clip", "clip_spec", default=None,
              help="The attacked CLIP [default: the run's].")
@click.option("--generator", "generator_spec", default=None,
              help="The generator [default: the run's, with its steps, guidance and size].")
@click.option("--classes", "classes_spec", default=None,
              help="The class set the run was judged with [default: the run's, when its "
                   "meta.json records it].")
@click.option("--arms", default=None,
              help="Comma-separated arms whose successes to explain [default: all].")
@click.option("--device", default="auto", show_default=True)
@json_option
def explain_command(run_dir, clip_spec, generator_spec, classes_spec, arms, device,
                    as_json) -> None:
    """Which words made the successful images succeed: each is removed in turn and the image
    re-rendered with the same seed; words are ranked per pair by the margin they carry.

    Works on an attack or a campaign folder; writes RUN/cues.json and RUN/explain.jsonl, which
    the summaries and the report show.

    \b
    Example:
      neuronattack explain outputs/attacks/horse-airplane
    """
    from neuronattack.attack.explain import explain_run, run_models
    from neuronattack.attack.setup import load_class_names, make_judge
    from neuronattack.models import load_clip
    from neuronattack.models.generators import load_generator
    from neuronattack.neurons.analysis import pick_device

    made = run_models(run_dir)
    classes_spec = classes_spec or made["classes"]
    if classes_spec is None:
        raise NeuronAttackError(f"{run_dir} does not record its class set; pass --classes "
                                "(imagenet, cifar10, toy or the file the attack used).")
    target_device = pick_device(device)
    clip = load_clip(clip_spec or made["clip"], device=target_device)
    overrides = {} if generator_spec else {k: v for k, v in made["overrides"].items() if v}
    generator = load_generator(generator_spec or made["generator"], device=str(target_device),
                               **overrides)
    judge = make_judge(clip, load_class_names(classes_spec), show_progress=not as_json)
    arm_list = None if arms is None else tuple(a.strip() for a in arms.split(",") if a.strip())
    result = explain_run(run_dir, generator, judge, arm_list, show_progress=not as_json)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    for row in result["pairs"].values():
        table = Table(title=f"{row['source']} → {row['target']}: {row['successes']} successful "
                            "images explained")
        for header in ("rank", "word", "images", "necessary", "drop per success", "95% CI",
                       "drop where used"):
            table.add_column(header, justify="left" if header == "word" else "right")
        for cue in row["cues"][:10]:
            low, high = cue["ci95"]
            table.add_row(str(cue["rank"]), cue["word"], str(cue["images"]),
                          f"{cue['necessary']} ({cue['necessary_rate']:.0%})",
                          f"{cue['effect_per_success']:.3f}", f"{low:.3f} – {high:.3f}",
                          f"{cue['mean_effect']:.3f}")
        stdout_console().print(table)
    console.print(f"wrote {run_dir / 'cues.json'}", highlight=False)


@main.command("report")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              help="[default: RUN/report.html]")
@click.option("--per-pair", type=click.IntRange(min=0), default=12, show_default=True,
              help="Images per gallery (fooled, not fooled) for each pair.")
@json_option
def report_command(run_dir, out_path, per_pair, as_json) -> None:
    """One static HTML page for an attack or campaign: rates with confidence intervals per pair
    and arm, galleries with sentences, neurons and words, and the transfer matrix."""
    from neuronattack.attack.run import summarize
    from neuronattack.campaign.export import load_run
    from neuronattack.campaign.report import write_report

    path = write_report(run_dir, out_path, per_pair)
    if as_json:
        arms = summarize(load_run(run_dir).records)
        click.echo(json.dumps({"out": str(path), "arms": arms}, indent=2))
        return
    console.print(f"wrote {path}")


roles_option = click.option(
    "--roles", "roles_dir", envvar="NEURONATTACK_ROLES",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Folder written by `neuronattack heads build` (or set NEURONATTACK_ROLES).")
role_options = (
    click.option("--heads", "heads_text", help="Heads to use, LAYER.HEAD comma-separated, e.g. "
                 "10.3,11.7."),
    click.option("--role", help="Or the heads whose TextSpan texts have this role (a [role] of "
                 "the text pool, e.g. background, colour) or contain this word."),
    click.option("--min-share", default=0.5, show_default=True,
                 help="--role: share of a head's explained variance its matching texts must "
                      "carry."),
)


def with_role_options(function):
    for option in reversed(role_options):
        function = option(function)
    return function


@main.command("ablate")
@click.option("--clip", "clip_spec", default=DEFAULT_CLIP, show_default=True,
              help="CLIP to measure (same forms as `analyze --clip`; `toy` for the toy CLIP).")
@labelled_images_options
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Writes OUT.json and OUT.png [default: outputs/ablation/<clip>].")
@json_option
def ablate_command(clip_spec, image_dir, names_file, out_path, every, limit, batch_size, device,
                   workers, as_json) -> None:
    """Which layers matter: zero-shot accuracy with every MLP's direct path mean-ablated, and with
    the attention layers' direct paths mean-ablated cumulatively from the first layer on.

    One traced pass over the images; every point of the curve is arithmetic on its pieces (no
    forward pass per ablation). The paper's finding to compare with (ViT-B-32 on ImageNet):
    MLPs and all but the last few attention layers can go with little loss.

    \b
    Example:
      neuronattack ablate --clip toy --images outputs/toy-labelled
    """
    from neuronattack.heads.ablation import run_ablate, write_ablation
    from neuronattack.imagesets import scan_images
    from neuronattack.models import load_clip
    from neuronattack.models.clip import clip_spec_problem, spec_slug
    from neuronattack.neurons.analysis import pick_device
    from neuronattack.progress import stdout_console

    validation.require_all([("--clip", clip_spec, clip_spec_problem),
                            ("--device", device, validation.device),
                            ("--batch-size", batch_size, validation.positive_int),
                            ("--every", every, validation.positive_int)])
    image_set = scan_images(image_dir, every=every, limit=limit)
    target = pick_device(device)
    clip = load_clip(clip_spec, device=target)
    curve = run_ablate(clip, image_set, names_file, batch_size, str(target), workers,
                       show_progress=not as_json)
    out_path = out_path or pipeline.OUTPUTS / "ablation" / spec_slug(clip.spec)
    json_path, png_path = write_ablation(curve, out_path, title=f"{clip.spec}: {image_set}")
    if as_json:
        click.echo(json.dumps(curve.as_dict(), indent=2))
        return
    table = Table(title=f"zero-shot accuracy, {curve.images:,} images, {curve.classes} classes")
    for header in ("attention layers ablated", "MLPs kept", "MLPs mean-ablated"):
        table.add_column(header, justify="right")
    for k, (kept, ablated) in enumerate(zip(curve.attention, curve.attention_and_mlps,
                                            strict=True)):
        table.add_row(f"0..{k - 1}" if k else "none", f"{kept:.1%}", f"{ablated:.1%}")
    stdout_console().print(table)
    console.print(f"wrote {json_path} and {png_path}")


@main.group()
def heads() -> None:
    """What each late attention head writes, in texts (TextSpan), and how to browse it."""


@heads.command("build")
@click.option("--clip", "clip_spec", default=DEFAULT_CLIP, show_default=True,
              help="CLIP to explain (same forms as `analyze --clip`; `toy` for the toy CLIP).")
@click.option("--images", "image_dir", required=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Folder of images, searched recursively; with class folders the accuracy of "
                   "the text replacement is measured too.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (heads.safetensors, heads.json).")
@click.option("--last", default=4, show_default=True,
              help="Explain the heads of the last N layers (the paper: the last 4 matter).")
@click.option("--texts", "pool_spec", default="auto", show_default=True,
              help="Text pool: default (304 shipped descriptions), toy (the toy world's words), "
                   "or a file (one description per line, [role] lines; see "
                   "neuronattack/heads/texts/README.md); auto picks toy for the toy CLIP.")
@click.option("--texts-per-head", "n_texts", default=10, show_default=True)
@click.option("--rank", default=80, show_default=True,
              help="Texts are projected onto the top RANK principal directions of each head.")
@click.option("--class-names", "names_file",
              type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="File of 'FOLDER<TAB>class name' lines overriding folder names.")
@click.option("--every", default=1, show_default=True, help="Use every K-th image.")
@click.option("--limit", type=int, default=None, help="Use at most N images (after --every).")
@click.option("--batch-size", default=64, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--workers", default=0, show_default=True, help="Image-decoding worker processes.")
@json_option
def heads_build(clip_spec, image_dir, out_dir, last, pool_spec, n_texts, rank, names_file, every,
                limit, batch_size, device, workers, as_json) -> None:
    """TextSpan: each head of the last layers explained by a few texts from a pool, with the
    variance each explains; with class folders, zero-shot accuracy when every such head is
    replaced by its texts. Browse with `heads show|search|list`.

    \b
    Example:
      neuronattack heads build --clip toy --images outputs/toy-labelled --out outputs/toy-heads
    """
    from neuronattack.heads.contributions import last_layers
    from neuronattack.heads.text_pool import default_pool_spec, load_text_pool
    from neuronattack.heads.textspan import build_head_roles
    from neuronattack.imagesets import scan_images
    from neuronattack.models import load_clip
    from neuronattack.models.clip import clip_spec_problem
    from neuronattack.neurons.analysis import pick_device

    validation.require_all([("--clip", clip_spec, clip_spec_problem),
                            ("--device", device, validation.device),
                            ("--last", last, validation.positive_int),
                            ("--texts-per-head", n_texts, validation.positive_int),
                            ("--rank", rank, validation.positive_int),
                            ("--batch-size", batch_size, validation.positive_int),
                            ("--every", every, validation.positive_int)])
    validation.writable_folder(out_dir)
    image_set = scan_images(image_dir, every=every, limit=limit)
    target = pick_device(device)
    clip = load_clip(clip_spec, device=target)
    pool = load_text_pool(default_pool_spec(clip.spec) if pool_spec == "auto" else pool_spec)
    layers = last_layers(clip.model.visual, last)
    roles = build_head_roles(clip, image_set, out_dir, layers, pool, n_texts, rank, names_file,
                             batch_size, str(target), workers, show_progress=not as_json)
    if as_json:
        click.echo(json.dumps({"accuracy": roles.accuracy,
                               "heads": [roles.card(h).as_dict() for h in roles.heads]},
                              indent=2))
        return
    print_head_table(roles, 3)
    accuracy = roles.accuracy
    if accuracy:
        console.print(f"zero-shot accuracy {accuracy['baseline']:.1%}; these heads replaced by "
                      f"their texts {accuracy['text_replaced']:.1%}, mean-ablated "
                      f"{accuracy['mean_ablated']:.1%}")
    console.print(f"wrote {out_dir}; browse it with `neuronattack heads list --roles {out_dir}`",
                  highlight=False)


def print_head_table(roles, n_texts: int) -> None:
    from neuronattack.progress import stdout_console

    table = Table(title=f"heads of {roles.model}")
    for header in ("head", "variance", "explained", "texts"):
        table.add_column(header, justify="left" if header == "texts" else "right")
    for head in roles.heads:
        card = roles.card(head)
        table.add_row(card.name, f"{card.variance:.3g}", f"{card.variance_explained:.0%}",
                      "; ".join(f"{text} ({share:.0%})" for text, _, share in
                                card.texts[:n_texts]))
    stdout_console().print(table)


@heads.command("list")
@roles_option
@click.option("--texts", "n_texts", default=3, show_default=True, help="Texts per head.")
@json_option
def heads_list(roles_dir, n_texts, as_json) -> None:
    """Every explained head with its first texts."""
    from neuronattack.heads.textspan import HeadRoles

    roles = HeadRoles.load(require_roles(roles_dir))
    if as_json:
        click.echo(json.dumps([roles.card(h).as_dict() for h in roles.heads], indent=2))
        return
    print_head_table(roles, n_texts)


def require_roles(roles_dir: Path | None) -> Path:
    if roles_dir is None:
        raise NeuronAttackError("Pass --roles, a folder written by `neuronattack heads build`.")
    return roles_dir


@heads.command("show")
@click.argument("head")
@roles_option
@json_option
def heads_show(head, roles_dir, as_json) -> None:
    """One head, named like 10.3 (layer 10, head 3): its texts and the variance each explains."""
    from neuronattack.heads.contributions import parse_head
    from neuronattack.heads.textspan import HeadRoles
    from neuronattack.progress import stdout_console

    card = HeadRoles.load(require_roles(roles_dir)).card(parse_head(head))
    if as_json:
        click.echo(json.dumps(card.as_dict(), indent=2))
        return
    out = stdout_console()
    out.print(f"head {card.name}  variance {card.variance:.4g}  explained by its texts "
              f"{card.variance_explained:.1%}")
    for text, role, share in card.texts:
        out.print(f"  {share:6.1%}  {text}" + (f"  ({role})" if role
                                                       else ""))


@heads.command("search")
@click.argument("word")
@roles_option
@click.option("--n", "count", default=20, show_default=True, help="Hits to list.")
@json_option
def heads_search(word, roles_dir, count, as_json) -> None:
    """Which heads have a text containing WORD (or of the role WORD), largest share first."""
    from neuronattack.heads.contributions import head_name
    from neuronattack.heads.textspan import HeadRoles
    from neuronattack.progress import stdout_console

    hits = HeadRoles.load(require_roles(roles_dir)).search(word)[:count]
    if as_json:
        click.echo(json.dumps([{"head": head_name(head), "text": text, "rank": rank,
                                "variance_explained": share}
                               for head, text, rank, share in hits], indent=2))
        return
    if not hits:
        console.print(f"no head's texts mention '{word}'")
        return
    table = Table(title=f"heads writing '{word}'")
    for header in ("head", "text", "rank among its texts", "variance explained"):
        table.add_column(header, justify="left" if header == "text" else "right")
    for head, text, rank, share in hits:
        table.add_row(head_name(head), text, str(rank + 1), f"{share:.1%}")
    stdout_console().print(table)


@main.command("debias")
@click.option("--csv", "csv_path", required=True,
              type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Grouped set: a CSV with the columns image,label,group (paths relative to it).")
@roles_option
@with_role_options
@click.option("--clip", "clip_spec", default=None,
              help="The CLIP [default: the --roles artifact's].")
@click.option("--last", default=4, show_default=True,
              help="Without --roles: random heads come from the last N layers.")
@click.option("--draws", default=20, show_default=True,
              help="Random head sets of the same size to compare with.")
@click.option("--seed", default=0, show_default=True)
@click.option("--batch-size", default=64, show_default=True)
@click.option("--device", default="auto", show_default=True)
@json_option
def debias_command(csv_path, roles_dir, heads_text, role, min_share, clip_spec, last, draws, seed,
                   batch_size, device, as_json) -> None:
    """Remove a shortcut by mean-ablating heads: per-group and worst-group zero-shot accuracy
    before and after, against ablating as many random heads of the same layers.

    \b
    Examples:
      neuronattack debias --csv waterbirds/groups.csv --clip ViT-B-32:openai --heads 10.3,11.7
      neuronattack debias --csv toy-split/groups.csv --roles outputs/toy-heads --role background
    """
    from neuronattack.heads.contributions import last_layers
    from neuronattack.heads.debias import read_grouped_csv, run_debias
    from neuronattack.heads.textspan import roles_and_clip, select_heads
    from neuronattack.models.clip import clip_spec_problem
    from neuronattack.neurons.analysis import pick_device
    from neuronattack.progress import stdout_console

    validation.require_all([("--device", device, validation.device),
                            ("--draws", draws, validation.positive_int),
                            ("--last", last, validation.positive_int),
                            ("--batch-size", batch_size, validation.positive_int)]
                           + ([("--clip", clip_spec, clip_spec_problem)] if clip_spec else []))
    grouped = read_grouped_csv(csv_path)
    target = pick_device(device)
    roles, clip = roles_and_clip(roles_dir, clip_spec, target)
    chosen = select_heads(roles, heads_text, role, min_share)
    layers = roles.layers if roles else last_layers(
        clip.model.visual, last)
    report = run_debias(clip, grouped, chosen, layers, draws, seed, batch_size, str(target),
                        show_progress=not as_json).as_dict()
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    table = Table(title=f"ablating {', '.join(report['heads'])}: zero-shot accuracy per group "
                        f"({report['images']:,} images, {report['classes']} classes)")
    for header in ("group", "before", "after"):
        table.add_column(header, justify="left" if header == "group" else "right")
    for group, before in report["before"]["groups"].items():
        table.add_row(group, f"{before:.1%}", f"{report['after']['groups'][group]:.1%}")
    table.add_row("worst group", f"{report['before']['worst']:.1%}",
                  f"{report['after']['worst']:.1%}")
    table.add_row("average", f"{report['before']['average']:.1%}",
                  f"{report['after']['average']:.1%}")
    stdout_console().print(table)
    low, high = report["random"]["worst_interval"]
    avg_low, avg_high = report["random"]["average_interval"]
    console.print(f"{report['random']['draws']} random sets of {len(report['heads'])} head(s): "
                  f"worst group {low:.1%}–{high:.1%}, average {avg_low:.1%}–{avg_high:.1%}; "
                  f"the chosen heads {'beat' if report['beats_random'] else 'do not beat'} them "
                  "on the worst group")


@main.command("retrieve")
@click.argument("query")
@click.option("--images", "image_dir", required=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Folder of images to search, recursively.")
@roles_option
@with_role_options
@click.option("--clip", "clip_spec", default=None,
              help="The CLIP [default: the --roles artifact's].")
@click.option("--n", "count", default=10, show_default=True, help="Images to list.")
@click.option("--batch-size", default=64, show_default=True)
@click.option("--device", default="auto", show_default=True)
@json_option
def retrieve_command(query, image_dir, roles_dir, heads_text, role, min_share, clip_spec, count,
                     batch_size, device, as_json) -> None:
    """Nearest images to QUERY (an image file, or else a text) by what a group of heads writes,
    next to the nearest by the whole embedding.

    \b
    Example (images with the same background as a query image, in the toy world):
      neuronattack retrieve scene.png --images outputs/toy-scenes --roles outputs/toy-heads \\
          --role background
    """
    from neuronattack.heads.retrieve import run_retrieve
    from neuronattack.heads.textspan import roles_and_clip, select_heads
    from neuronattack.imagesets import scan_images
    from neuronattack.models.clip import clip_spec_problem
    from neuronattack.neurons.analysis import pick_device
    from neuronattack.progress import stdout_console

    validation.require_all([("--device", device, validation.device),
                            ("--n", count, validation.positive_int),
                            ("--batch-size", batch_size, validation.positive_int)]
                           + ([("--clip", clip_spec, clip_spec_problem)] if clip_spec else []))
    image_set = scan_images(image_dir)
    target = pick_device(device)
    roles, clip = roles_and_clip(roles_dir, clip_spec, target)
    by_heads, whole = run_retrieve(clip, image_set, query,
                                   select_heads(roles, heads_text, role, min_share), count,
                                   batch_size, str(target), show_progress=not as_json,
                                   text_reference=roles.texts if roles else None)
    if as_json:
        click.echo(json.dumps({"heads": by_heads.as_dict(), "full_embedding": whole.as_dict()},
                              indent=2))
        return
    table = Table(title=f"nearest to {query}")
    table.add_column("rank", justify="right")
    table.add_column(f"heads {', '.join(by_heads.heads)}")
    table.add_column("whole embedding")
    for rank, (mine, theirs) in enumerate(zip(by_heads.images, whole.images, strict=True),
                                          start=1):
        table.add_row(str(rank), mine, theirs)
    stdout_console().print(table)


@main.command()
@click.argument("image", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--text", required=True, help='What to look for, as CLIP reads it: "a bird".')
@click.option("--minus", default=None,
              help='A second text to contrast with: red means TEXT rather than MINUS.')
@click.option("--clip", "clip_spec", default=DEFAULT_CLIP, show_default=True,
              help="The CLIP to explain (same forms as `analyze --clip`; `toy` offline).")
@click.option("--layers", "first_layer", type=int, default=None,
              help="Blocks whose heads the patch values sum over [default: all].")
@click.argument("more_layers", nargs=-1, type=int, metavar="")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Overlay PNG [default: IMAGE-heatmap.png next to the image].")
@click.option("--device", default="auto", show_default=True)
@json_option
def heatmap(image, text, minus, clip_spec, first_layer, more_layers, out_path, device,
            as_json) -> None:
    """Where in IMAGE CLIP sees TEXT: each patch's exact share of the image-text similarity.

    Each patch's direct contributions (summed over the heads of the chosen blocks) are projected
    on the text's embedding, or on TEXT minus MINUS; the patches plus the rest (CLS token, MLPs,
    other blocks) sum exactly to the cosine similarity (difference). Red: toward TEXT.

    \b
    Examples:
      neuronattack heatmap frog.png --text "a bird" --minus "a frog" --clip toy
      neuronattack heatmap cat.jpg --text "a photo of a dog" --layers 8 9 10 11
    """
    from neuronattack.maps.heatmap import write_heatmap
    from neuronattack.models import load_clip
    from neuronattack.neurons.analysis import pick_device

    if more_layers and first_layer is None:
        raise NeuronAttackError("Put block numbers after --layers, e.g. --layers 9 10 11.")
    layers = None if first_layer is None else (first_layer, *more_layers)
    if not image.is_file():
        raise NeuronAttackError(f"{image} is not a file.")
    out_path = out_path or image.with_name(f"{image.stem}-heatmap.png")
    clip = load_clip(clip_spec, device=pick_device(device))
    summary = write_heatmap(clip, image, text, out_path, minus, layers)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    console.print(f"score {summary['score']:+.4f} ({summary['units']}) = patches "
                  f"{summary['patches']:+.4f} + rest {summary['rest']:+.4f}")
    console.print(f"wrote {summary['out']}")


@main.command()
@click.argument("data", type=click.Path(file_okay=False, path_type=Path), required=False)
@click.option("--clip", "clip_spec", default=DEFAULT_CLIP, show_default=True,
              help="The CLIP whose maps are scored (`toy` offline).")
@click.option("--toy", "toy_scenes", type=click.IntRange(min=1), default=None,
              help="Draw N toy scenes with exact masks into DATA first "
                   "[DATA default: outputs/segment/toy].")
@click.option("--atlas", "atlas_dir", type=click.Path(file_okay=False, exists=True,
                                                      path_type=Path),
              help="An atlas of the same CLIP: also score the neuron-based maps.")
@click.option("--classes", "classes_spec", default=None,
              help="imagenet, cifar10, toy or a file of names [default: toy for the toy CLIP, "
                   "else the labels in labels.json].")
@click.option("--neurons", default=100, show_default=True,
              help="Neurons per class for the neuron-based maps.")
@click.option("--batch-size", default=16, show_default=True)
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Results JSON [default: DATA/segmentation.json].")
@click.option("--device", default="auto", show_default=True)
@json_option
def segment(data, clip_spec, toy_scenes, atlas_dir, classes_spec, neurons, batch_size, out_path,
            device, as_json) -> None:
    """Zero-shot segmentation from maps, scored against masks: pixel accuracy, mIoU and AP for
    the text map, the neuron maps (with --atlas) and two baselines (CLS attention, uniform).

    \b
    DATA holds your images and masks:
      DATA/images/NAME.png|jpg|...   DATA/masks/NAME.png (non-zero = foreground, same size)
      DATA/labels.json               optional {"NAME": "class"}; else CLIP's top-1 class
    \b
    Examples:
      neuronattack segment --toy 300 --clip toy --atlas outputs/demo/atlas
      neuronattack segment my-masks --clip ViT-B-32:openai --classes imagenet
    """
    from neuronattack.maps.segment import run_segment
    from neuronattack.models import load_clip
    from neuronattack.neurons.analysis import pick_device

    if data is None:
        if toy_scenes is None:
            raise NeuronAttackError("Give a DATA folder of images/ and masks/, or --toy N.")
        data = pipeline.OUTPUTS / "segment" / "toy"
    clip = load_clip(clip_spec, device=pick_device(device))
    result = run_segment(clip, data, classes_spec, atlas_dir, toy_scenes, neurons, batch_size,
                         out_path, show_progress=not as_json)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    table = Table(title=f"{result['images']} images · {clip.spec}")
    for header in ("map", "pixel accuracy", "mIoU", "IoU fg", "AP"):
        table.add_column(header, justify="left" if header == "map" else "right")
    for kind, scores in result["kinds"].items():
        table.add_row(kind, f"{scores['pixel_accuracy']:.3f}", f"{scores['miou']:.3f}",
                      f"{scores['iou_foreground']:.3f}", f"{scores['ap']:.3f}")
    stdout_console().print(table)
    console.print(f"wrote {result['out']}")


@main.command()
@click.option("--fast", is_flag=True,
              help="400 scenes and 8 images per arm instead of 3,000 and 48 (the CI setting).")
@click.option("--out", "out_dir", default=pipeline.DEMO_FOLDER, show_default=True,
              type=click.Path(file_okay=False, path_type=Path))
@json_option
def demo(fast, out_dir, as_json) -> None:
    """The whole method, offline, on a CPU, in a toy world where everything is real.

    A small CLIP trained here on drawn scenes (with a few planted shortcuts, e.g. ships on water)
    is analysed, its neurons decomposed into the world's words, and class pairs are attacked with
    the method and the baselines. The toy renderer draws exactly what each sentence says, so the
    rates below are real measurements. Results: OUT/demo.json, OUT/attacks/*/summary.html,
    contact sheets in OUT/sheets/.
    """
    from neuronattack.demo import FAST, FULL, run_demo

    result = run_demo(out_dir, FAST if fast else FULL, show_progress=not as_json)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    print_demo_tables(result)
    console.print(f"wrote {out_dir / 'demo.json'}, {out_dir / 'attacks'}/*/summary.html and "
                  f"contact sheets in {out_dir / 'sheets'}", highlight=False)


def print_demo_tables(result: dict) -> None:
    def rate(row: dict) -> str:
        return "–" if row["rate"] is None else f"{row['rate']:.0%}"

    def shift(row: dict) -> str:
        if row.get("mean") is None:
            return "–"
        low, high = row["ci95"]
        return f"{row['mean']:+.2f} [{low:+.2f}, {high:+.2f}]"

    table = Table(title="valid images whose top-1 is the target, per image rendered; margin "
                        "shift vs source-only, 95% bootstrap interval (intervals of rates: "
                        "demo.json)")
    for header in ("pair", "arm", "contextual", "any kind", "typogr.", "distr.", "binary",
                   "margin shift"):
        table.add_column(header, justify="left" if header in ("pair", "arm") else "right")
    for pair, summary in result["pairs"].items():
        rows = [*summary.items(), ("method, filter off", result["class_filter_off"][pair])]
        for position, (arm, row) in enumerate(rows):
            table.add_row(pair if position == 0 else "", arm, rate(row["contextual_top1"]),
                          rate(row["top1"]), rate(row["top1_by_kind"]["typographic"]),
                          rate(row["top1_by_kind"]["distractor"]), rate(row["valid_success"]),
                          shift(row["margin_shift"]), end_section=position == len(rows) - 1)
    stdout_console().print(table)
    cues = Table(title="planted cues: uptake by the toy CLIP, recovery by selection and discovery")
    for header in ("class", "cue", "planted P", "uptake (with − without)", "in method's words",
                   f"in top-{3} discovered"):
        cues.add_column(header)
    uptake = result.get("cue_uptake") or {}
    for row in result["cues"]:
        measured = next((v for k, v in uptake.items() if k.startswith(f"{row['class']}<-")), None)
        gain = (f"{measured['with'] - measured['without']:+.1%}"
                if isinstance(measured, dict) and "with" in measured else "–")
        selected = (f"yes (rank {row['rank']})" if row["recovered"]
                    else f"no ({row.get('dropped_because') or 'not selected'})")
        found = (f"yes (rank {row['discovery_rank']})" if row.get("discovered") else
                 f"no (rank {row.get('discovery_rank') or '–'} of "
                 f"{row.get('successes_explained', 0)} successes)")
        cues.add_row(row["class"], row["cue"], f"{row['probability']:.2f}", gain, selected, found)
    stdout_console().print(cues)
    goals = result["goals"]
    console.print(f"method beats every arm on the margin shift (intervals apart): "
                  f"{goals['pairs_won']} of {len(result['pairs'])} pairs; planted cues discovered: "
                  f"{goals['cues_discovered']} of {len(result['cues'])}", highlight=False)


@main.command("explore")
@click.argument("atlas_dir", metavar="ATLAS", type=AtlasSource())
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the site; open OUT/index.html in a browser (no server needed).")
@click.option("--images", "images_root", type=click.Path(file_okay=False, path_type=Path),
              help="The analysed image set, if it moved or the atlas came packed: top images "
                   "become thumbnails.")
@click.option("--thumbnails", default=8, show_default=True, help="Top images shown per neuron.")
@click.option("--pair", "pair_texts", multiple=True, metavar="SOURCE:TARGET",
              help="A class pair to show the neurons and words an attack would use "
                   "(repeatable; loads the CLIP).")
@click.option("--clip", "clip_spec", default=None,
              help="CLIP for --pair [default: the atlas' model]; must have its vision weights.")
@click.option("--heads", "heads_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Head roles (JSON, see neuronattack.explore.heads) [default: heads.json "
                   "next to the atlas, if there].")
@click.option("--device", default="cpu", show_default=True, help="Device for --pair's CLIP.")
@json_option
def explore_command(atlas_dir, out_dir, images_root, thumbnails, pair_texts, clip_spec,
                    heads_file, device, as_json) -> None:
    """Write a static site to browse an atlas: search a word, open a neuron, see a pair.

    \b
    Examples:
      neuronattack explore outputs/vit-b-32 --out site/ && open site/index.html
      neuronattack explore hf-hub:ORG/NAME --out site/ --images ~/imagenet-5k --pair cat:dog
    """
    from neuronattack.explore import explore
    from neuronattack.explore.pairs import parse_pairs

    index = explore(atlas_dir, out_dir, images_root=images_root, thumbnails=thumbnails,
                    pairs=parse_pairs(pair_texts), clip_spec=clip_spec, heads_file=heads_file,
                    device=device, show_progress=not as_json)
    if as_json:
        click.echo(json.dumps({"index": str(index)}))
        return
    console.print(Text(f"wrote {index}; open it in a browser"))


@main.group("atlas")
def atlas_group() -> None:
    """Share atlases: pack one into a file with its card; use it as --atlas FILE or hf-hub:ORG/NAME.

    \b
    Publish a packed atlas (huggingface_hub; see the README):
      neuronattack atlas pack outputs/vit-b-32 b32.tar --description "ImageNet train, 5k"
      python -c "from huggingface_hub import HfApi; HfApi().upload_file(
          path_or_fileobj='b32.tar', path_in_repo='atlas.tar', repo_id='ORG/NAME')"
    """


@atlas_group.command("pack")
@click.argument("atlas_dir", metavar="ATLAS", type=click.Path(file_okay=False, exists=True,
                                                               path_type=Path))
@click.argument("out", metavar="OUT.tar", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--description", default=None,
              help="What the image set is, for the card (e.g. 'ImageNet train, 5 per class').")
@json_option
def atlas_pack(atlas_dir, out, description, as_json) -> None:
    """Pack an atlas folder into one file with its card (model, weights fingerprint, image set,
    vocabulary and licence, versions); the card is also written as OUT.tar's README.md inside."""
    from neuronattack.neurons.share import describe, pack_atlas

    card = describe(pack_atlas(atlas_dir, out, description))
    if as_json:
        click.echo(json.dumps(card, indent=2))
        return
    console.print(Text(f"wrote {out} ({card['bytes'] / 2**20:.1f} MiB): {card['model']}, vision "
                       f"weights {card['vision_fingerprint']}; use it with --atlas {out}"))

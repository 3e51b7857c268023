"""Generators: the tiny random-weights pipeline end to end, hub and folder loading, all offline."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import pytest
import torch

from neuronattack.errors import NeuronAttackError
from neuronattack.models.generators import (
    BLANK_STD,
    PRESETS,
    RETRY_SEED_OFFSET,
    DiffusersGenerator,
    clip_tokenizer,
    image_defects,
    load_generator,
    retry_seed,
)

FAKE_COMMIT = "0123456789abcdef0123456789abcdef01234567"
PROMPTS = ["a photo of a cat", "a red car", "an apple on a table"]


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Run this module on one thread: the tiny pipeline's kernels are too small to gain from more,
    and when other processes hold the cores, thread barriers made 2 threads ~4x slower than 1."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny() -> DiffusersGenerator:
    return load_generator("tiny")


@pytest.fixture(scope="module")
def saved_tiny(tmp_path_factory: pytest.TempPathFactory, tiny: DiffusersGenerator) -> Path:
    folder = tmp_path_factory.mktemp("tiny-pipeline")
    tiny.pipeline.save_pretrained(folder)
    return folder



def cache_pipeline(cache: Path, repo_id: str, tiny: DiffusersGenerator) -> Path:
    """Save the tiny pipeline where huggingface_hub caches a repo's main branch."""
    repo_dir = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo_dir / "snapshots" / FAKE_COMMIT
    tiny.pipeline.save_pretrained(snapshot)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(FAKE_COMMIT)
    return snapshot


def pixels(generator: DiffusersGenerator, seeds: list[int], **kwargs: Any) -> list[np.ndarray]:
    results = generator.render(PROMPTS[: len(seeds)], seeds, **kwargs)
    return [np.asarray(result.image, dtype=np.int16) for result in results]


class Sabotaged:
    """The real pipeline, except that images for chosen seeds come back replaced by ``fill``."""

    def __init__(self, pipeline: Any, bad_seeds: set[int], fill: float) -> None:
        self.pipeline, self.bad_seeds, self.fill = pipeline, bad_seeds, fill
        self.calls: list[list[int]] = []

    def __call__(self, **kwargs: Any) -> Any:
        output = self.pipeline(**kwargs)
        seeds = [generator.initial_seed() for generator in kwargs["generator"]]
        self.calls.append(seeds)
        for index, seed in enumerate(seeds):
            if seed in self.bad_seeds:
                output.images[index] = self.fill
        return output

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pipeline, name)


def sabotage(
    monkeypatch: pytest.MonkeyPatch, bad_seeds: set[int], fill: float
) -> tuple[Sabotaged, DiffusersGenerator]:
    generator = load_generator("tiny")
    fake = Sabotaged(generator.pipeline, bad_seeds, fill)
    monkeypatch.setattr(generator, "pipeline", fake)
    return fake, generator


def test_tiny_renders_one_image_per_prompt_in_batches(tiny: DiffusersGenerator) -> None:
    generator = load_generator("tiny", batch_size=2)
    prompts = PROMPTS + ["a dog", "a house"]
    results = generator.render(prompts, [10, 11, 12, 13, 14])

    assert [r.seed for r in results] == [r.requested_seed for r in results] == [10, 11, 12, 13, 14]
    assert not any(r.retried or r.failed or r.reason for r in results)
    assert all(r.image.size == (64, 64) and r.image.mode == "RGB" for r in results)
    assert generator.render([], []) == []


def test_same_seed_gives_the_same_pixels_and_other_seeds_differ(tiny: DiffusersGenerator) -> None:
    first = pixels(tiny, [5, 6])
    again = pixels(load_generator("tiny"), [5, 6])  # a second build: weights are seeded too

    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert np.abs(first[0] - first[1]).mean() > 1


def test_an_image_of_a_batch_renders_alone_from_its_seed(tiny: DiffusersGenerator) -> None:
    seeds = [3, 1_000, 2**40]
    together = pixels(tiny, seeds)
    alone = [tiny.render([prompt], [seed])[0] for prompt, seed in zip(PROMPTS, seeds, strict=True)]

    for batched, single in zip(together, alone, strict=True):
        # Batched and single matmuls may round differently: at most one 8-bit level apart.
        assert np.abs(batched - np.asarray(single.image, dtype=np.int16)).max() <= 1


def test_negative_prompt_steers_guided_renders_and_is_ignored_unguided(
    tiny: DiffusersGenerator, caplog: pytest.LogCaptureFixture
) -> None:
    guided = load_generator("tiny", guidance=5.0)
    plain = pixels(guided, [0])[0]
    steered = pixels(guided, [0], negative_prompt="blurry, low quality")[0]
    assert np.abs(plain - steered).max() > 0

    unguided = load_generator("tiny")
    with caplog.at_level(logging.WARNING):
        ignored = pixels(unguided, [0], negative_prompt="blurry, low quality")[0]
        pixels(unguided, [0], negative_prompt="blurry, low quality")
    np.testing.assert_array_equal(ignored, pixels(tiny, [0])[0])
    assert caplog.text.count("The negative prompt has no effect on 'tiny'") == 1


@pytest.mark.parametrize(("fill", "defect"), [(np.nan, "non-finite"), (0.0, "blank")])
def test_a_broken_image_is_rerendered_once_with_the_derived_seed(
    monkeypatch: pytest.MonkeyPatch, fill: float, defect: str
) -> None:
    fake, generator = sabotage(monkeypatch, {8}, fill)
    results = generator.render(PROMPTS, [7, 8, 9])

    retried = results[1]
    assert fake.calls == [[7, 8, 9], [8 + RETRY_SEED_OFFSET]]
    assert (retried.seed, retried.requested_seed) == (retry_seed(8), 8)
    assert retried.retried and not retried.failed
    assert defect in retried.reason and str(retry_seed(8)) in retried.reason
    # The record is enough to re-render the retried image alone.
    alone = load_generator("tiny").render([PROMPTS[1]], [retried.seed])[0].image
    assert np.abs(np.asarray(alone, np.int16) - np.asarray(retried.image, np.int16)).max() <= 1
    assert not any(r.retried for r in (results[0], results[2]))


def test_an_image_broken_twice_is_reported_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    fake, generator = sabotage(monkeypatch, {1, retry_seed(1)}, np.nan)
    results = generator.render(PROMPTS[:2], [0, 1])

    failed = results[1]
    assert len(fake.calls) == 2
    assert failed.image is None and failed.failed and failed.retried
    assert (failed.seed, failed.requested_seed) == (retry_seed(1), 1)
    assert "seed 1," in failed.reason and f"seed {retry_seed(1)}" in failed.reason
    assert results[0].image is not None and not results[0].failed


def test_defect_rule() -> None:
    noise = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    noise[1, 0, 2, 3] = float("nan")
    noise[2, 2, 7, 7] = float("inf")
    noise[3] = 0.0
    # Flat grey with one brighter pixel: std = bump * sqrt(n - 1) / n over n values.
    n = noise[0].numel()
    for index, fraction_of_threshold in ((4, 0.9), (5, 1.1)):
        noise[index] = 0.5
        noise[index, 0, 0, 0] += fraction_of_threshold * BLANK_STD * n / np.sqrt(n - 1)

    defects = image_defects(noise)

    assert defects[0] is None and defects[5] is None
    assert "non-finite" in defects[1] and "non-finite" in defects[2]
    assert "blank" in defects[3] and "blank" in defects[4]
    assert retry_seed(5) == 5 + 1_000_003
    assert retry_seed(2**63 - 1) == 1_000_002


def test_presets_name_the_documented_checkpoints_and_settings() -> None:
    table = {
        name: (p.repo_id, p.steps, p.guidance, p.size, p.cuda_dtype) for name, p in PRESETS.items()
    }
    assert table == {
        "sd-turbo": ("stabilityai/sd-turbo", 1, 0.0, 512, torch.float16),
        "sdxl-turbo": ("stabilityai/sdxl-turbo", 1, 0.0, 512, torch.float16),
        "sd15": ("stable-diffusion-v1-5/stable-diffusion-v1-5", 25, 7.5, 512, torch.float16),
        "flux-schnell": ("black-forest-labs/FLUX.1-schnell", 4, 0.0, 256, torch.bfloat16),
        "tiny": (None, 2, 0.0, 64, torch.float32),
    }


@pytest.mark.parametrize(
    ("spec", "repo_id", "steps", "guidance", "safety"),
    [
        ("sd-turbo", "stabilityai/sd-turbo", 1, 0.0, "absent"),
        ("stabilityai/sd-turbo", "stabilityai/sd-turbo", 1, 0.0, "absent"),
        ("hf-hub:stabilityai/sdxl-turbo", "stabilityai/sdxl-turbo", 1, 0.0, "absent"),
        ("sd15", "stable-diffusion-v1-5/stable-diffusion-v1-5", 25, 7.5, "disabled"),
    ],
)
def test_presets_load_from_the_hub_cache_with_their_settings(
    offline_hub: Path,
    tiny: DiffusersGenerator,
    spec: str,
    repo_id: str,
    steps: int,
    guidance: float,
    safety: str,
) -> None:
    snapshot = cache_pipeline(offline_hub, repo_id, tiny)
    if safety == "disabled":  # as in sd15's model_index.json; the checker is never loaded
        index = json.loads((snapshot / "model_index.json").read_text())
        index["safety_checker"] = ["stable_diffusion", "StableDiffusionSafetyChecker"]
        index["requires_safety_checker"] = True
        (snapshot / "model_index.json").write_text(json.dumps(index))

    generator = load_generator(spec, device="cpu")

    assert generator.name == spec
    assert generator.pipeline.safety_checker is None
    assert generator.settings == {
        "model": repo_id,
        "revision": FAKE_COMMIT,
        "preset": next(name for name, p in PRESETS.items() if p.repo_id == repo_id),
        "safety_checker": safety,
        "meaningless": False,
        "pipeline": "StableDiffusionPipeline",
        "steps": steps,
        "guidance": guidance,
        "size": (512, 512),
        "batch_size": PRESETS[generator.settings["preset"]].batch_size,
        "scheduler": "EulerDiscreteScheduler",
        "dtype": "float32",
        "device": "cpu",
        "retry_seed_offset": RETRY_SEED_OFFSET,
    }
    assert f"{repo_id}@0123456" in generator.describe()


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ("sd-turbo", "'sd-turbo' (stabilityai/sd-turbo)"),
        ("flux-schnell", "'flux-schnell' (black-forest-labs/FLUX.1-schnell)"),
        ("someone/some-pipeline", "'someone/some-pipeline'"),
    ],
)
def test_missing_pipeline_fails_fast_with_the_way_out(
    offline_hub: Path, spec: str, named: str
) -> None:
    start = time.monotonic()
    with pytest.raises(NeuronAttackError) as caught:
        load_generator(spec)

    assert time.monotonic() - start < 5
    message = str(caught.value)
    assert f"The pipeline for {named} could not be downloaded or found" in message
    assert "(HF_HUB_OFFLINE is set and the cache does not hold it)" in message
    assert "HF_HUB_OFFLINE=1" in message and "hf download" in message
    assert "\n" not in message


def test_saved_tiny_pipeline_loads_from_its_folder_and_renders_the_same(
    tiny: DiffusersGenerator, saved_tiny: Path
) -> None:
    for spec in (str(saved_tiny), f"local-dir:{saved_tiny}"):
        loaded = load_generator(spec, steps=2, guidance=0.0)

        assert loaded.settings["model"] == str(saved_tiny)
        assert loaded.settings["revision"] is None
        assert loaded.settings["size"] == (64, 64)  # the pipeline's native size
        assert not loaded.settings["meaningless"]  # the folder no longer says where it came from
        for ours, theirs in zip(pixels(loaded, [0, 1]), pixels(tiny, [0, 1]), strict=True):
            np.testing.assert_array_equal(ours, theirs)


def test_other_repos_start_from_sd_defaults(saved_tiny: Path) -> None:
    settings = load_generator(str(saved_tiny)).settings
    assert (settings["steps"], settings["guidance"], settings["batch_size"]) == (25, 7.5, 4)


@pytest.mark.parametrize(
    ("spec", "suggestion"),
    [
        ("sd-trubo", "did you mean sd-turbo"),
        ("dalle", "presets: sd-turbo, sdxl-turbo, sd15, flux-schnell, tiny, toy."),
        ("toyy", "did you mean toy?"),  # plug-ins' generators are suggested too
        ("./no/such/folder", "no/such/folder does not exist"),
        ("local-dir:/no/such/folder", "/no/such/folder does not exist"),
        ("hf-hub:", "write it as 'org/name'"),
        ("  ", "spec is empty"),
    ],
)
def test_bad_specs_get_one_sentence_saying_what_to_do(spec: str, suggestion: str) -> None:
    with pytest.raises(NeuronAttackError) as caught:
        load_generator(spec)

    assert suggestion in str(caught.value)
    assert "\n" not in str(caught.value)


def test_folder_that_is_no_pipeline_is_refused(tmp_path: Path) -> None:
    (tmp_path / "open_clip_config.json").write_text("{}")
    with pytest.raises(NeuronAttackError, match="is not a diffusers pipeline"):
        load_generator(str(tmp_path))


def test_incomplete_pipeline_folder_is_refused(tmp_path: Path, saved_tiny: Path) -> None:
    (tmp_path / "model_index.json").write_text((saved_tiny / "model_index.json").read_text())
    with pytest.raises(NeuronAttackError, match="diffusers could not load"):
        load_generator(str(tmp_path))


def test_custom_pipeline_code_is_refused(tmp_path: Path) -> None:
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": ["mine", "MyPipe"]}))
    with pytest.raises(NeuronAttackError, match="runs no custom pipeline code"):
        load_generator(str(tmp_path))


def test_tiny_says_loudly_that_it_is_noise(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        generator = load_generator("tiny")

    assert "TINY GENERATOR: random weights" in caplog.text
    assert generator.settings["meaningless"] is True
    assert generator.describe() == (
        "tiny: 2 steps, guidance 0, 64x64, batch 8, float32 on cpu, EulerDiscreteScheduler "
        "[RANDOM WEIGHTS: images are noise]"
    )


def test_overrides_and_their_checks() -> None:
    generator = load_generator("tiny", steps=1, guidance=2.5, size=(32, 48), batch_size=2)

    assert generator.settings["steps"] == 1 and generator.settings["guidance"] == 2.5
    assert generator.render(PROMPTS[:1], [0])[0].image.size == (32, 48)
    for bad, message in [
        ({"size": 50}, "multiple of 16"),
        ({"steps": 0}, "at least 1"),
        ({"guidance": -1.0}, ">= 0"),
    ]:
        with pytest.raises(NeuronAttackError, match=message):
            load_generator("tiny", **bad)
    with pytest.raises(NeuronAttackError, match="Unknown dtype"):
        load_generator("tiny", dtype="int8")


def test_seeds_are_checked(tiny: DiffusersGenerator) -> None:
    for seeds, message in [
        ([0], "one seed per prompt"),
        ([0, -1], r"\[0, 2\*\*63\)"),
        ([0, 1.5], "integers"),
    ]:
        with pytest.raises(NeuronAttackError, match=message):
            tiny.render(PROMPTS[:2], seeds)


def test_building_tiny_leaves_the_global_rng_alone() -> None:
    before = torch.random.get_rng_state()
    load_generator("tiny")
    assert torch.equal(torch.random.get_rng_state(), before)


def test_offline_tokenizer_matches_open_clip() -> None:
    tokenizer = clip_tokenizer()
    texts = ["a photo of a cat", "Hello, World! It's 42 héllo naïve 東京 :)", " tabs\tand  spaces "]

    assert len(tokenizer) == 49408
    assert tokenizer.convert_tokens_to_ids(["<|startoftext|>", "<|endoftext|>"]) == [49406, 49407]
    for text in texts:
        ids = tokenizer(text).input_ids
        reference = open_clip.tokenize([text])[0].tolist()
        assert ids == reference[: len(ids)] and reference[len(ids)] == 0
    padded = tokenizer(texts[0], padding="max_length", max_length=tokenizer.model_max_length)
    assert len(padded.input_ids) == 77

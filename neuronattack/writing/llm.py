"""The LLM writer: a causal language model from a local folder or the Hugging Face cache writes
the lines, as in the paper; they pass the same filter as the template writer's."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from neuronattack.errors import NeuronAttackError
from neuronattack.models.hub import (
    HubUnavailable,
    cached_or_downloaded,
    first_line,
    resolve_device,
)
from neuronattack.writing.base import HF_PREFIX, Sentence, check_request
from neuronattack.writing.inflection import indefinite_article
from neuronattack.writing.matching import mentions_text, post_filter, usable_words, words_in

if TYPE_CHECKING:
    import torch

_BULLET = re.compile(r"^\s*(?:[-*•·–—>]+|\(?\d{1,3}[.):\]]|\d{1,3}\s+[-–—]|[A-Za-z][.)](?=\s))\s*")
_QUOTE_PAIRS = {'"': '"', "'": "'", "“": "”", "‘": "’", "«": "»"}
_MODEL_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken", "tokenizer*"]
# Room for one description per line asked for, plus the model's preamble.
_TOKENS_PER_LINE = 48
_PREAMBLE_TOKENS = 64


def build_prompt(source: str, words: Sequence[str], count: int, forbidden: Collection[str]) -> str:
    """The instructions of method.md §6 for an instruction-following LLM."""
    lines = [
        f"Write {count} different descriptions of photographs for an image generator, one per "
        "line.",
        # No quotes around the name: models copy them, and quoted words are refused as text.
        f"Every description shows {indefinite_article(source)} {source} and names it with "
        f"exactly these words: {source}.",
    ]
    if words:
        lines.append(
            "Use as many of these words as you can in every description, as objects, colours, "
            f"places, actions or qualities of the scene: {', '.join(words)}."
        )
    if forbidden:
        lines.append(
            "Never use these words, their plurals, their synonyms or closely related words: "
            f"{', '.join(sorted(forbidden))}."
        )
    lines += [
        "Describe concrete scenes a camera could capture. There must be no text, signs, letters, "
        "labels, logos or writing anywhere in the image.",
        "Answer with the descriptions only: no numbering, no quotes, no other text.",
    ]
    return "\n".join(lines)


def parse_lines(raw: str) -> list[str]:
    """Descriptions from an LLM's answer: one per line, numbering, bullets and quotes removed.

    Lines that end with ':' (a preamble such as "Here are 5 descriptions:") and lines of fewer
    than three words are dropped.
    """
    lines = []
    for line in raw.splitlines():
        text = _BULLET.sub("", line, count=1).strip().strip("*_").strip()
        if len(text) > 1 and _QUOTE_PAIRS.get(text[0]) == text[-1]:
            text = text[1:-1].strip()
        text = text.rstrip(" .")
        if text and not text.endswith(":") and len(text.split()) >= 3:
            lines.append(text)
    return lines


class HFWriter:
    """A causal language model from a local folder or the Hugging Face cache writes the lines.

    The model is loaded when the writer is made, so a missing model fails before anything else
    runs. Generation samples under a private torch RNG seeded from (seed, round), so the same call
    gives the same lines and the caller's RNG is untouched. Lines go through the same filter as
    the template writer's plus :func:`mentions_text`; rounds repeat (at most ``max_rounds``) until
    ``count`` lines pass.
    """

    def __init__(
        self,
        model: str,
        device: str = "auto",
        max_new_tokens: int | None = None,
        max_rounds: int = 4,
        temperature: float = 0.8,
    ) -> None:
        self.model_ref = model
        self.name = f"{HF_PREFIX}{model}"
        self.max_new_tokens = max_new_tokens
        self.max_rounds = max_rounds
        self.temperature = temperature
        folder = _model_folder(model)
        self.device = _resolve_device(device)
        self.tokenizer, self.model = _load_causal_lm(folder, self.device, model)

    def write(
        self,
        source: str,
        words: Sequence[str],
        count: int,
        seed: int,
        forbidden: Collection[str] = (),
    ) -> list[Sentence]:
        source = check_request(source, count)
        chosen = usable_words(words, source, forbidden)
        kept: list[str] = []
        for round_index in range(self.max_rounds):
            if len(kept) >= count:
                break
            missing = count - len(kept)
            # Ask for half as many again: some lines always fail the filter.
            lines_asked = missing + (missing + 1) // 2
            prompt = build_prompt(source, chosen, lines_asked, forbidden)
            budget = self.max_new_tokens or _PREAMBLE_TOKENS + _TOKENS_PER_LINE * lines_asked
            raw = self.generate(prompt, _round_seed(seed, round_index), budget)
            allowed = [source, *chosen]
            lines = [line for line in parse_lines(raw) if not mentions_text(line, allowed)]
            kept = post_filter([*kept, *lines], source, forbidden)
        if len(kept) < count:
            raise NeuronAttackError(
                f"The writer '{self.name}' wrote only {len(kept)} of {count} usable descriptions "
                f"of '{source}' in {self.max_rounds} rounds (each must name '{source}', none of "
                f"the {len(forbidden)} forbidden words and no text in the image); try a stronger "
                "instruction model or the template writer."
            )
        return [Sentence(text, words_in(text, chosen)) for text in kept[:count]]

    def format_prompt(self, prompt: str) -> str:
        """The text the model reads: the prompt in its chat template when it has one."""
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
        return f"{prompt}\n\n"

    def generate(self, prompt: str, seed: int, max_new_tokens: int = 512) -> str:
        """The model's raw answer to one prompt, sampled under ``seed``."""
        import torch

        chat = bool(getattr(self.tokenizer, "chat_template", None))
        # A chat template already writes the special tokens the model expects.
        inputs = self.tokenizer(
            self.format_prompt(prompt), return_tensors="pt", add_special_tokens=not chat
        ).to(self.device)
        pad = self.tokenizer.pad_token_id
        with _private_rng(seed, self.device), torch.no_grad():
            output = self.model.generate(
                **inputs,
                do_sample=True,
                temperature=self.temperature,
                top_p=0.95,
                max_new_tokens=max_new_tokens,
                pad_token_id=self.tokenizer.eos_token_id if pad is None else pad,
            )
        new_tokens = output[0, inputs["input_ids"].shape[1] :]  # [new]
        return self.tokenizer.decode(new_tokens, skip_special_tokens=True)


def _round_seed(seed: int, round_index: int) -> int:
    """A seed for one round: rounds of one call differ, and stay off neighbouring calls' seeds."""
    digest = hashlib.sha256(f"{seed}:{round_index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 2**63


@contextmanager
def _private_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's RNG for sampling and restore the caller's afterwards."""
    import torch

    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _resolve_device(device: str) -> torch.device:
    import torch

    try:
        return torch.device(resolve_device(device))
    except RuntimeError as error:
        raise NeuronAttackError(
            f"Unknown device '{device}' for the writer; use auto, cpu, cuda or cuda:N."
        ) from error


def _model_folder(ref: str) -> Path:
    """The local folder of the writer model: the path given, or a hub repo's cache snapshot."""
    path = Path(os.path.abspath(os.path.expanduser(ref)))
    if path.is_dir():
        return path
    # A repo id is "name" or "org/name"; anything else that is not a folder is a wrong path.
    looks_like_path = ref.startswith((".", "/", "~")) or ref.count("/") > 1 or "\\" in ref
    if looks_like_path or not re.fullmatch(r"[\w.\-]+(/[\w.\-]+)?", ref):
        raise NeuronAttackError(
            f"The writer model folder {path} does not exist; give 'hf:/path/to/model' (a folder "
            "with config.json, the tokenizer and the weights) or a hub repo id such as "
            "'hf:Qwen/Qwen2.5-1.5B-Instruct'."
        )
    return _hub_snapshot(ref)


def _hub_snapshot(repo_id: str) -> Path:
    """A hub repo's cache snapshot, downloaded if need be (weights as safetensors only), or a
    NeuronAttackError at once."""
    from huggingface_hub import snapshot_download

    try:
        return cached_or_downloaded(
            repo_id, "config.json", partial(snapshot_download, repo_id, allow_patterns=_MODEL_FILES)
        )
    except HubUnavailable as reason:
        raise NeuronAttackError(
            f"The writer model '{repo_id}' could not be downloaded or found in the local Hugging "
            f"Face cache ({reason}); pass a local folder as 'hf:/path/to/model', or pre-populate "
            "the Hugging Face cache (hf download REPO on a machine with network) and set "
            "HF_HUB_OFFLINE=1."
        ) from None


def _load_causal_lm(folder: Path, device: torch.device, ref: str) -> tuple[object, object]:
    """Tokenizer and model from a local folder, never running code shipped with the model."""
    import torch

    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as error:
        raise NeuronAttackError(
            "The hf: writer needs the transformers package; install it with "
            "'pip install transformers' or use the template writer."
        ) from error
    # Half precision is slow or missing on CPU; bfloat16 keeps an 8B model on one GPU.
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            folder, local_files_only=True, trust_remote_code=False
        )
        model = AutoModelForCausalLM.from_pretrained(
            folder, local_files_only=True, trust_remote_code=False, dtype=dtype
        )
    # transformers raises many types for an incomplete or foreign folder.
    except Exception as error:
        raise NeuronAttackError(
            f"transformers could not load a text-generation model for '{ref}' from {folder} "
            f"({first_line(error)}); check that it holds a causal language model (config.json, "
            "tokenizer, safetensors weights) that needs no custom code."
        ) from error
    return tokenizer, model.to(device).eval()

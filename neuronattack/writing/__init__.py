"""Writers: from a source class and the attack's chosen words to image descriptions.

The attack (method.md §6) needs sentences that show the source, use as many of the chosen words
as fit, and never name the target or anything the word filter dropped. Two writers share one
contract (:class:`Writer`, in ``base``) and one post-filter (``matching.post_filter``):

- :class:`TemplateWriter` (the default, ``template_writer``): offline and deterministic per seed.
  A small role classifier (``lexicon.word_role``) guesses what each word can be in a scene, the
  composer (``composer``) turns the roles into slot contents ("a fluffy red cat", "on the beach",
  "under the moon"), and a template (``templates``, from
  ``neuronattack/resources/sentence_templates.txt``) puts the slots in order.
- :class:`HFWriter` (``llm``): a causal LLM from the Hugging Face cache or a local folder, as in
  the paper, whose lines go through the same filter.

Neither writer ever puts a word *into* text in the image (a sign that reads "value", a label, a
caption, quotes): an image that spells a word is a typographic attack, not a semantic one. The
template loader refuses templates that ask for text, and lines that describe text are dropped.
"""

from __future__ import annotations

from neuronattack.errors import NeuronAttackError
from neuronattack.validation import parser_refusal
from neuronattack.writing.base import HF_PREFIX, TEMPLATE_PREFIX, Sentence, Writer
from neuronattack.writing.llm import HFWriter
from neuronattack.writing.template_writer import TemplateWriter

__all__ = ["HFWriter", "Sentence", "TemplateWriter", "Writer", "load_writer", "parse_writer_spec",
           "writer_spec_problem"]


def load_writer(spec: str = TEMPLATE_PREFIX, device: str = "auto") -> Writer:
    """The writer a spec names: ``template``, ``template:PATH`` or ``hf:REPO_OR_PATH``.

    ``device`` is where an ``hf:`` model runs; the template writer needs none.
    """
    prefix, reference = parse_writer_spec(spec)
    if prefix == HF_PREFIX:
        return HFWriter(reference, device=device)
    return TemplateWriter(reference or None)


def parse_writer_spec(spec: str) -> tuple[str, str]:
    """``(TEMPLATE_PREFIX or HF_PREFIX, the path or model; "" for the built-in templates)``;
    nothing is loaded or read."""
    text = spec.strip()
    if text in ("", TEMPLATE_PREFIX):
        return TEMPLATE_PREFIX, ""
    if text.startswith(f"{TEMPLATE_PREFIX}:") and text[len(TEMPLATE_PREFIX) + 1 :].strip():
        return TEMPLATE_PREFIX, text[len(TEMPLATE_PREFIX) + 1 :].strip()
    if text.startswith(HF_PREFIX) and text[len(HF_PREFIX) :].strip():
        return HF_PREFIX, text[len(HF_PREFIX) :].strip()
    raise NeuronAttackError(
        f"Unknown writer spec '{spec}'; use 'template', 'template:/path/to/templates.txt' or "
        "'hf:REPO_OR_PATH' (a Hugging Face repo id or a local model folder)."
    )


def writer_spec_problem(value: object) -> str | None:
    """What is wrong with a ``--writer`` spec (a campaign's ``[writer] spec``), by
    :func:`load_writer`'s own parser; None when nothing is."""
    return parser_refusal(parse_writer_spec, value)

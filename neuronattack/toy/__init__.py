"""A toy world in which all of neuronattack runs for real on a CPU, without pretrained weights.

- ``world``: the concepts (12 classes, colours, patterns, backgrounds, props, sign glyphs) and the
  table of class-context correlations planted in training (``CUES``).
- ``scenes``: scene graphs, the training (cued) and held-out (cue-free) distributions, captions.
- ``draw``: scene graph to 64x64 pixels, seeded; ``draw_with_layout`` also returns the ``Layout``
  of what is visible where (per-object masks and sizes, sign and prop masks).
- ``renderer``: ``ToyRenderer``, sentences to images behind the diffusion generator's interface;
  it knows what it drew, so attack images are valid by construction.
- ``model``: the toy CLIP (an open_clip ViT config registered as ``neuronattack-toy-ViT``) and
  ``load_toy_clip`` for the weights shipped in ``weights/``.
- ``train``: ``python -m neuronattack.toy.train``, the script that produced those weights.
- ``vocabulary``: ``toy_words()``, the dictionary for word decompositions: ``drawable_words()``
  (what the renderer draws) plus ordinary words the world cannot draw.
"""

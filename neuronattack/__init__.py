"""neuronattack: semantic adversarial images for CLIP, found by reading the model's own neurons.

The public API, loaded on first use (``import neuronattack`` stays cheap and loads no torch)::

    clip = neuronattack.load_clip("toy")
    atlas = neuronattack.obtain_atlas(clip)                 # built first when missing
    context = neuronattack.attack_context(clip, atlas, names, generator="toy", checker="toy")
    records = neuronattack.run_attack(context, neuronattack.AttackSettings("horse", "airplane"),
                                      neuronattack.attack_folder("horse", "airplane"))
"""

from importlib import import_module

__version__ = "0.1.0"

# name -> (module, attribute): one line per public entry point, imported when first asked for.
_PUBLIC = {
    # models
    "load_clip": ("neuronattack.models.clip", "load_clip"),
    "load_generator": ("neuronattack.models.generators", "load_generator"),
    "load_writer": ("neuronattack.writing", "load_writer"),
    "load_class_names": ("neuronattack.attack.setup", "load_class_names"),
    # neurons
    "analyze": ("neuronattack.neurons.analysis", "analyze"),
    "AnalysisSettings": ("neuronattack.neurons.settings", "AnalysisSettings"),
    "Atlas": ("neuronattack.neurons.atlas", "Atlas"),
    # from specs to an atlas and an attack context
    "obtain_atlas": ("neuronattack.pipeline", "obtain_atlas"),
    "attack_context": ("neuronattack.pipeline", "attack_context"),
    "attack_folder": ("neuronattack.pipeline", "attack_folder"),
    "atlas_folder": ("neuronattack.pipeline", "atlas_folder"),
    # attacks
    "AttackSettings": ("neuronattack.attack.settings", "AttackSettings"),
    "run_attack": ("neuronattack.attack.run", "run_attack"),
    "run_attacks": ("neuronattack.attack.run", "run_attacks"),
    "summarize": ("neuronattack.attack.run", "summarize"),
    "AttackRecord": ("neuronattack.attack.records", "AttackRecord"),
    "read_records": ("neuronattack.attack.records", "read_records"),
    "explain": ("neuronattack.attack.explain", "explain_run"),
    # campaigns and what is made of them
    "load_campaign": ("neuronattack.campaign.config", "load_campaign"),
    "run_campaign": ("neuronattack.campaign.runner", "run_campaign"),
    "export": ("neuronattack.campaign.export", "export_run"),
    "report": ("neuronattack.campaign.report", "write_report"),
    # heads
    "build_head_roles": ("neuronattack.heads.textspan", "build_head_roles"),
    "ablate_heads": ("neuronattack.heads.ablation", "run_ablate"),
    "debias": ("neuronattack.heads.debias", "run_debias"),
    "retrieve": ("neuronattack.heads.retrieve", "run_retrieve"),
    # maps
    "heatmap": ("neuronattack.maps.heatmap", "write_heatmap"),
    "segment": ("neuronattack.maps.segment", "run_segment"),
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    # PEP 562: the CLI's --help and `import neuronattack` do not pay for torch and open_clip.
    if name not in _PUBLIC:
        raise AttributeError(f"module 'neuronattack' has no attribute {name!r}")
    module, attribute = _PUBLIC[name]
    value = getattr(import_module(module), attribute)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])

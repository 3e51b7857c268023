"""One source of truth for attack settings: the CLI's option defaults, the campaign schema's and
``pipeline.attack_context``'s come from ``attack.settings``; the context's models satisfy the
protocols it is typed with."""

import inspect
import subprocess
import sys
from dataclasses import fields

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from neuronattack import pipeline
from neuronattack.attack import settings
from neuronattack.attack.settings import AttackSettings
from neuronattack.campaign import config
from neuronattack.campaign.config import SCHEMA, parse_campaign

# AttackSettings field -> the `attack` option that sets it (source and target are arguments).
CLI_OPTIONS = {"n": "count", "arms": "arms", "n_neurons": "n_neurons", "n_words": "n_words",
               "seed": "seed", "negative_prompt": "negative_prompt",
               "similarity_percentile": "similarity_percentile",
               "block_list": "block_list", "class_filter": "keep_class_words"}
# What each option's default means as a setting.
AS_SETTING = {"arms": lambda text: tuple(text.split(",")),
              "block_list": lambda path: () if path is None else path,
              "class_filter": lambda keep: not keep}
SETTINGS_FIELDS = [entry for entry in fields(AttackSettings) if entry.name not in ("source",
                                                                                    "target")]
# Only [model] clip is required: the rest of a unit's settings are the defaults.
MINIMAL = ('[model]\nclip = "toy"\n[pairs]\nlist = [["goldfish", "great white shark"]]\n')


def attack_params() -> dict:
    """What the `attack` function receives when no option is given."""
    from neuronattack.cli import main

    return main.commands["attack"].make_context("attack", ["cat", "dog"]).params


def test_every_setting_has_an_attack_option_whose_default_is_the_dataclass_default():
    params = attack_params()
    assert {entry.name for entry in SETTINGS_FIELDS} == set(CLI_OPTIONS)
    for entry in SETTINGS_FIELDS:
        default = params[CLI_OPTIONS[entry.name]]
        assert AS_SETTING.get(entry.name, lambda value: value)(default) == entry.default, entry.name


def test_the_attack_models_default_to_the_settings_module():
    params = attack_params()
    assert (params["generator_spec"], params["writer_spec"], params["checker"],
            params["classes_spec"], params["batch_size"]) == (
        settings.DEFAULT_GENERATOR, settings.DEFAULT_WRITER, settings.DEFAULT_CHECKER,
        settings.DEFAULT_CLASSES, settings.RENDER_BATCH)
    keywords = inspect.signature(pipeline.attack_context).parameters
    assert (keywords["generator"].default, keywords["writer"].default,
            keywords["checker"].default, keywords["render_batch"].default) == (
        settings.DEFAULT_GENERATOR, settings.DEFAULT_WRITER, settings.DEFAULT_CHECKER,
        settings.RENDER_BATCH)


def test_a_campaign_without_attack_keys_runs_units_with_the_dataclass_defaults():
    campaign = parse_campaign(MINIMAL, "c.toml")
    assert campaign.settings("goldfish", "great white shark", 3) == AttackSettings(
        "goldfish", "great white shark", seed=3)
    assert campaign.seeds == (AttackSettings.seed,)
    assert (campaign.generator.spec, campaign.writer, campaign.checker, campaign.classes) == (
        settings.DEFAULT_GENERATOR, settings.DEFAULT_WRITER, settings.DEFAULT_CHECKER,
        settings.DEFAULT_CLASSES)
    assert campaign.out == pipeline.OUTPUTS / "campaigns" / "c"


def test_campaign_keys_set_the_fields_they_name():
    campaign = parse_campaign(MINIMAL + '[attack]\nn = 5\nneurons = 7\nwords = 9\nseeds = [4, 2]\n'
                              'arms = ["source-only", "method"]\nnegative_prompt = ""\n'
                              'similarity_percentile = 90\nclass_filter = false\n'
                              'block_list = ["sea"]\n', "c.toml")
    assert campaign.settings("goldfish", "great white shark", 2) == AttackSettings(
        "goldfish", "great white shark", n=5, arms=("source-only", "method"), n_neurons=7,
        n_words=9, seed=2, negative_prompt=None, similarity_percentile=90.0,
        block_list=("sea",), class_filter=False)
    assert campaign.seeds == (4, 2)


def test_the_schema_in_the_config_docstring_shows_the_defaults():
    """The docstring is where users read the schema: its default-valued lines must stay true."""
    shown = tomllib.loads(config.__doc__.split("::", 1)[1])
    for table, key in [("attack", "n"), ("attack", "seeds"), ("attack", "neurons"),
                       ("attack", "words"), ("attack", "similarity_percentile"),
                       ("attack", "class_filter"), ("generator", "spec"), ("writer", "spec"),
                       ("judges", "checker"), ("judges", "classes"), ("run", "device")]:
        assert shown[table][key] == SCHEMA[table][key].default, (table, key)


def test_a_changed_default_reaches_the_cli_and_the_campaign_schema():
    """No copy of a default anywhere: change the dataclass, and every reader follows."""
    code = """
import dataclasses
import neuronattack.attack.settings as settings

@dataclasses.dataclass(frozen=True)
class Changed(settings.AttackSettings):
    n: int = 7
    n_words: int = 3
    similarity_percentile: float = 95.0

settings.AttackSettings = Changed
from neuronattack.cli import main
from neuronattack.campaign.config import parse_campaign
params = main.commands["attack"].make_context("attack", ["cat", "dog"]).params
unit = parse_campaign('[model]\\nclip = "toy"\\n[pairs]\\nlist = [["goldfish", "tench"]]\\n',
                      "c.toml").settings("goldfish", "tench", 0)
print(params["count"], params["n_words"], params["similarity_percentile"], unit.n,
      unit.n_words, unit.similarity_percentile)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["7", "3", "95.0", "7", "3", "95.0"]


def test_attack_folders_and_campaign_units_share_the_pair_name():
    from neuronattack.campaign.runner import Unit

    assert pipeline.pair_name is settings.pair_name
    assert Unit("sea lion", "Dog", 0).folder == "units/sea_lion-dog/s0"
    pairs, problems = config.check_pair_list(
        [["sea lion", "dog"], ["sea-lion", "dog"]],
        {"sea lion": "sea lion", "sea-lion": "sea-lion", "dog": "dog"}, config.TomlLines(""))
    assert pairs == [("sea lion", "dog")]
    assert [problem.message for problem in problems] == [
        "[pairs] list: sea-lion → dog and sea lion → dog would share the folder "
        "units/sea_lion-dog; keep one"]


def _members(protocol: type) -> set[str]:
    own = set(vars(protocol)) | set(getattr(protocol, "__annotations__", {}))
    return {name for name in own if not name.startswith("_")}


def _conforms(protocol: type, implementation: object) -> list[str]:
    """What ``implementation`` (a class, or an instance for attributes set in __init__) lacks or
    spells differently: a member missing, or a method taking other parameters."""
    cls = implementation if isinstance(implementation, type) else type(implementation)
    set_on_init = inspect.getsource(cls.__init__) if isinstance(implementation, type) else ""
    wrong = []
    for name in sorted(_members(protocol)):
        if not (hasattr(implementation, name) or f"self.{name} = " in set_on_init):
            wrong.append(f"{cls.__name__} has no {name}")
            continue
        expected = vars(protocol).get(name)
        if inspect.isfunction(expected):
            want = list(inspect.signature(expected).parameters)
            have = list(inspect.signature(getattr(cls, name)).parameters)
            if want != have:
                wrong.append(f"{cls.__name__}.{name}{have} is not {want}")
    return wrong


def test_the_context_models_satisfy_the_protocols_the_context_is_typed_with():
    from neuronattack.attack.judge import ClipChecker, NoChecker
    from neuronattack.models.checking import Checker
    from neuronattack.models.generators import DiffusersGenerator, Generator
    from neuronattack.toy.checker import ToyChecker, ToyGenerator
    from neuronattack.writing import HFWriter, TemplateWriter, Writer

    cases = [(Checker, ClipChecker), (Checker, NoChecker()), (Checker, ToyChecker(["a", "b"])),
             (Generator, DiffusersGenerator), (Generator, ToyGenerator()),
             (Writer, TemplateWriter()), (Writer, HFWriter)]
    assert _members(Checker) == {"name", "check"}
    assert [problem for protocol, implementation in cases
            for problem in _conforms(protocol, implementation)] == []


def test_campaign_spec_checks_are_the_loaders_own(tmp_path, monkeypatch):
    """A spec the campaign accepts is one the loader reads, and the other way round: the check
    is the loader's parser (a grammar of its own once accepted "~/names.txt" that the loader
    refused, and refused " hf:org/model" that the loader reads)."""
    from neuronattack.attack.setup import load_class_names
    from neuronattack.errors import NeuronAttackError
    from neuronattack.writing import parse_writer_spec

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "names.txt").write_text("goldfish\ntench\n")
    assert config.class_set("~/names.txt") is None
    assert load_class_names("~/names.txt") == ["goldfish", "tench"]
    assert config.class_set("~/nothing.txt") is not None
    with pytest.raises(NeuronAttackError, match="nothing.txt"):
        load_class_names("~/nothing.txt")
    assert config.writer(" hf:org/model") is None
    assert parse_writer_spec(" hf:org/model") == ("hf:", "org/model")
    for bad in ("gpt", "hf:", "template:", "llm:foo"):
        assert config.writer(bad) is not None
        with pytest.raises(NeuronAttackError, match="Unknown writer spec"):
            parse_writer_spec(bad)


def test_analyze_options_default_to_the_analysis_settings_module():
    """`analyze`'s options, the analysis and atlas functions and the settings module agree."""
    from neuronattack.cli import main
    from neuronattack.neurons import analysis, atlas
    from neuronattack.neurons import settings as analysis_settings
    from neuronattack.neurons.settings import AnalysisSettings

    params = main.commands["analyze"].make_context(
        "analyze", ["--images", "x", "--out", "y"]).params
    defaults = {entry.name: entry.default for entry in fields(AnalysisSettings)
                if entry.name != "layers"}
    assert {name: params[name] for name in defaults} == defaults
    assert (params["batch_size"], params["words"], params["nonzeros"], params["solver"]) == (
        analysis_settings.DEFAULT_BATCH_SIZE, analysis_settings.DEFAULT_VOCABULARY,
        analysis_settings.DEFAULT_NONZEROS, analysis_settings.SOLVERS[0])
    assert inspect.signature(analysis.analyze).parameters["batch_size"].default == \
        analysis_settings.DEFAULT_BATCH_SIZE
    ensure = inspect.signature(atlas.ensure_atlas).parameters
    assert (ensure["words"].default, ensure["nonzeros"].default, ensure["solver"].default) == (
        analysis_settings.DEFAULT_VOCABULARY, analysis_settings.DEFAULT_NONZEROS,
        analysis_settings.SOLVERS[0])
    assert tuple(analysis.PRECISIONS) == analysis_settings.PRECISION_NAMES


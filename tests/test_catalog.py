import textwrap

import pytest

import zoo
from zoo.catalog import ModelCard, filter_cards, merge, parse_count, read_registry, search_cards
from zoo.cli import main
from zoo.errors import CatalogError, UnknownFilterValueError

GOOD = textwrap.dedent(
    """\
    version: 1
    sources:
      demo: {framework: torch, install: pip install demo}
    models:
      - id: demo:alpha.v1
        family: alpha
        modality: image
        framework: torch
        params: 1000
      - id: demo:beta.v1
        family: beta
        modality: text
        framework: torch
        tasks: [fill-mask]
    """
)


def card(id, **kw):
    base = dict(id=id, family="resnet", modality="image", framework="torch")
    base.update(kw)
    return ModelCard(**base)


def test_installed_registry_is_valid():
    reg = read_registry()
    assert reg.models, "registry.yaml has no entries"
    assert {m.source for m in reg.models} <= set(reg.sources)


def test_good_file(tmp_path):
    p = tmp_path / "registry.yaml"
    p.write_text(GOOD)
    reg = read_registry(p)
    assert [m.id for m in reg.models] == ["demo:alpha.v1", "demo:beta.v1"]
    with pytest.raises(Exception):
        reg.models[0].params = 3  # frozen


@pytest.mark.parametrize(
    "edit, expected",
    [
        (("params: 1000", "params: lots"), "registry.yaml:9 models[0] (id=demo:alpha.v1) -> params:"),
        (("modality: text", "modality: audio"), "registry.yaml:12 models[1] (id=demo:beta.v1) -> modality:"),
        (("tasks: [fill-mask]", "tasks: [fill-mask]\n    colour: red"), "registry.yaml:15 models[1] (id=demo:beta.v1) -> colour: unknown field"),
        (("id: demo:beta.v1", "id: demo:alpha.v1"), "models[1] (id=demo:alpha.v1) -> id: duplicate of models[0]"),
        (("id: demo:beta.v1", "id: other:beta.v1"), "models[1] (id=other:beta.v1) -> id: source 'other' is not declared"),
        (("id: demo:beta.v1", "id: beta"), "registry.yaml:10 models[1] (id=beta) -> id:"),
        (("version: 1", "version: 2"), "registry.yaml:1 version:"),
    ],
)
def test_invalid_file_names_line_entry_and_field(tmp_path, edit, expected):
    p = tmp_path / "registry.yaml"
    p.write_text(GOOD.replace(*edit))
    with pytest.raises(CatalogError) as info:
        read_registry(p)
    assert expected in str(info.value), str(info.value)
    assert "\n" not in str(info.value)


def test_yaml_syntax_error(tmp_path):
    p = tmp_path / "registry.yaml"
    p.write_text(GOOD + "  - id: [unclosed\n")
    with pytest.raises(CatalogError, match=r"registry.yaml:\d+: not valid YAML"):
        read_registry(p)


def test_cli_validate(tmp_path, capsys):
    p = tmp_path / "registry.yaml"
    p.write_text(GOOD)
    assert main(["catalog", "validate", str(p)]) == 0
    assert "2 entries" in capsys.readouterr().out
    p.write_text(GOOD.replace("params: 1000", "params: -5"))
    assert main(["catalog", "validate", str(p)]) == 2
    err = capsys.readouterr().err
    assert "registry.yaml:9 models[0] (id=demo:alpha.v1) -> params: Input should be greater than or equal to 0" in err


def test_cli_validate_a_missing_file_is_one_line(tmp_path, capsys):
    for path in (tmp_path / "nope.yaml", tmp_path):  # no such file; a folder
        assert main(["catalog", "validate", str(path)]) == 2
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1 and err.startswith("zoo: error: ") and "cannot read" in err, err
        assert "fields named above" not in err


def test_broken_registry_breaks_no_command_silently(tmp_path, monkeypatch, capsys):
    p = tmp_path / "registry.yaml"
    p.write_text(GOOD.replace("modality: image", "modality: imag"))
    monkeypatch.setenv("ZOO_REGISTRY", str(p))
    zoo.reset()
    assert main(["list"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("zoo: error: Invalid catalog: registry.yaml:7 models[0] (id=demo:alpha.v1) -> modality")
    assert len(err.splitlines()) == 1


def test_filters_compose():
    cards = [
        card("a:resnet18.x", params=11_000_000, top1=70.0, gflops=1.8),
        card("a:resnet50.x", params=25_000_000, top1=80.0, gflops=4.1),
        card("b:bert.x", family="bert", modality="text", tasks=("fill-mask",), params=110_000_000),
        card("b:gpt2.x", family="gpt2", modality="text", tasks=("text-generation",)),
    ]
    ids = lambda cs: [c.id for c in cs]  # noqa: E731
    assert ids(filter_cards(cards, modality="text", family="bert")) == ["b:bert.x"]
    assert ids(filter_cards(cards, max_params=20e6)) == ["a:resnet18.x"]
    assert ids(filter_cards(cards, min_top1=75)) == ["a:resnet50.x"]
    assert ids(filter_cards(cards, max_gflops=2)) == ["a:resnet18.x"]
    assert ids(filter_cards(cards, pattern="a:resnet*")) == ["a:resnet18.x", "a:resnet50.x"]
    assert ids(filter_cards(cards, pattern="GPT")) == ["b:gpt2.x"]
    assert ids(filter_cards(cards, source="b", task="text-generation")) == ["b:gpt2.x"]
    with pytest.raises(UnknownFilterValueError, match="Unknown modality 'imag'. Did you mean: image"):
        filter_cards(cards, modality="imag")
    with pytest.raises(UnknownFilterValueError, match="Unknown family 'bret'"):
        filter_cards(cards, family="bret")
    with pytest.raises(UnknownFilterValueError, match="Unknown source 'c'"):
        filter_cards(cards, source="c")
    with pytest.raises(UnknownFilterValueError, match="Unknown task"):
        filter_cards(cards, task="segmentation")


def test_parse_count():
    assert parse_count("10M") == 10e6
    assert parse_count("1.5B") == 1.5e9
    assert parse_count("300k") == 300e3
    assert parse_count(42) == 42
    with pytest.raises(UnknownFilterValueError):
        parse_count("many")


def test_search_ranks_exact_and_curated_first():
    cards = [
        card("t:resnet50.a1", origin="timm", description="ResNet-50"),
        card("v:resnet50.V2", description="ResNet-50 with new recipe"),
        card("v:resnet101.V2", description="ResNet-101"),
        card("b:bert.x", family="bert", modality="text"),
    ]
    hits = [c.id for c in search_cards(cards, "resnet50")]
    assert hits[:2] == ["v:resnet50.V2", "t:resnet50.a1"]
    assert "b:bert.x" not in hits
    assert [c.id for c in search_cards(cards, "resnet recipe")] == ["v:resnet50.V2"]
    assert search_cards(cards, "   ") == []


def test_curated_takes_precedence():
    curated = [card("a:x.y", params=1)]
    dynamic = {"a:x.y": card("a:x.y", params=2, origin="p"), "a:z.y": card("a:z.y", origin="p")}
    merged = merge(curated, dynamic)
    assert merged["a:x.y"].params == 1 and merged["a:x.y"].origin == "registry"
    assert "a:z.y" in merged


def test_default_flag_survives_curation():
    curated = [card("a:x.v2", params=1)]
    dynamic = {"a:x.v2": card("a:x.v2", origin="p", default=True), "a:x.v1": card("a:x.v1", origin="p")}
    merged = merge(curated, dynamic)
    assert merged["a:x.v2"].default and merged["a:x.v2"].params == 1
    filled = merge([card("a:y.v1", params=1)], {"a:y.v1": card("a:y.v1", origin="p", params=2, input_size=299)})
    assert filled["a:y.v1"].params == 1 and filled["a:y.v1"].input_size == 299 and filled["a:y.v1"].origin == "registry"

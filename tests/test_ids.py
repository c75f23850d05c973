import pytest
from hypothesis import given
from hypothesis import strategies as st

from zoo import ModelId, parse_id
from zoo.errors import MalformedIdError, ZooError


@pytest.mark.parametrize(
    "text, expected",
    [
        ("timm:resnet50.a1_in1k", ModelId("timm", "resnet50", "a1_in1k")),
        ("timm:convnext_tiny.fb_in22k@v1", ModelId("timm", "convnext_tiny", "fb_in22k", "v1")),
        ("torchvision:resnet50.IMAGENET1K_V2", ModelId("torchvision", "resnet50", "IMAGENET1K_V2")),
        ("keras:EfficientNetB0.imagenet", ModelId("keras", "EfficientNetB0", "imagenet")),
        (
            "tfhub:google/imagenet/mobilenet_v2_100_224/feature_vector/5",
            ModelId("tfhub", "google/imagenet/mobilenet_v2_100_224/feature_vector/5"),
        ),
        ("hf:bert-base-uncased@a265f77", ModelId("hf", "bert-base-uncased", None, "a265f77")),
        ("timm:resnet50", ModelId("timm", "resnet50")),
        ("  timm:resnet50  ", ModelId("timm", "resnet50")),
    ],
)
def test_parse(text, expected):
    assert parse_id(text) == expected


def test_untagged_keeps_dots_in_names():
    assert parse_id("hf:org/model-v1.5", tagged=False) == ModelId("hf", "org/model-v1.5")
    assert parse_id("hf:org/model-v1.5") == ModelId("hf", "org/model-v1", "5")


def test_frozen_and_str_roundtrip():
    mid = parse_id("timm:resnet50.a1_in1k@abc")
    with pytest.raises(AttributeError):
        mid.name = "x"  # type: ignore[misc]
    assert str(mid) == "timm:resnet50.a1_in1k@abc"
    assert mid.base == "timm:resnet50.a1_in1k"
    assert mid.arch == "timm:resnet50"
    assert hash(mid) == hash(parse_id(str(mid)))


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("resnet50", "source is missing"),
        (":resnet50", "source before ':' is empty"),
        ("timm:", "name after ':' is empty"),
        ("Timm:resnet50", "lower-case"),
        ("timm:resnet50@", "revision after '@' is empty"),
        ("timm:res net", "whitespace"),
        ("timm:a:b", "more than one"),
        ("timm:resnet50.", "single dots"),
        ("https://tfhub.dev/google/x/1", "URLs are not ids"),
        ("tfhub://google/x", "URLs are not ids"),
        ("", "empty"),
    ],
)
def test_malformed(text, fragment):
    with pytest.raises(MalformedIdError) as info:
        parse_id(text)
    msg = str(info.value)
    assert fragment in msg
    assert "\n" not in msg and "source:name[.tag][@revision]" in msg
    assert isinstance(info.value, (ZooError, ValueError))


def test_non_string():
    with pytest.raises(MalformedIdError):
        parse_id(None)  # type: ignore[arg-type]


@given(
    st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_\-]{0,12}", fullmatch=True),
    st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_]{0,8}", fullmatch=True)),
    st.one_of(st.none(), st.from_regex(r"[0-9a-f]{7,40}", fullmatch=True)),
)
def test_roundtrip_property(source, name, tag, revision):
    mid = ModelId(source, name, tag, revision)
    assert parse_id(str(mid)) == mid

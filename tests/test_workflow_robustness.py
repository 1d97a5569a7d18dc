"""Bad input never raises: every hostile file or JSON shape gives references or a clean one-line error."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from comfyfixer.models import Reference, WorkflowResult
from comfyfixer.workflow import heuristics, parse_bytes, parse_document, parse_file
from tests.fixtures import media


def assert_clean(result: WorkflowResult) -> None:
    """Either references (maybe none) and no error, or an error that is one plain line."""
    if result.error is not None:
        assert result.error.strip() and "\n" not in result.error
        assert "Traceback" not in result.error
        assert result.references == []
    for ref in result.references:
        assert isinstance(ref, Reference)
        assert isinstance(ref.name, str) and ref.name
        assert ref.directory is None or isinstance(ref.directory, str)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"   \n", "empty"),
        (b'{"nodes": [', "not valid JSON"),
        (b"\x00\x01\x02binary\xff" * 10, "binary"),
        (b"[1, 2, 3]", "not an object"),
        (b'"just a string"', "not an object"),
        (b'{"hello": "world"}', "no 'nodes' list"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "no ComfyUI workflow"),
        (media.png(media.text_chunk("workflow", "{not json")), "not valid JSON"),
    ],
)
def test_bad_bytes_give_one_line_errors(data: bytes, reason: str) -> None:
    result = parse_bytes(data, "bad.json")
    assert_clean(result)
    assert result.error is not None and reason in result.error, result.error


def test_missing_file_is_an_error_not_an_exception(tmp_path: Path) -> None:
    result = parse_file(tmp_path / "nope.json")
    assert_clean(result)
    assert result.error is not None and result.error.startswith("cannot read file")


def test_directory_instead_of_file(tmp_path: Path) -> None:
    assert_clean(parse_file(tmp_path))
    assert parse_file(tmp_path).error is not None


def test_large_file_parses(tmp_path: Path) -> None:
    """A 50 MB workflow (huge base64-like widget values) is read, not refused, and still yields its model."""
    filler = "A" * (1024 * 1024)
    nodes = [{"id": i, "type": "LoadImageBase64", "widgets_values": [filler]} for i in range(50)]
    nodes.append({"id": 99, "type": "CheckpointLoaderSimple", "widgets_values": ["big.safetensors"]})
    path = tmp_path / "big.json"
    path.write_text(json.dumps({"nodes": nodes}), encoding="utf-8")
    assert path.stat().st_size > 50_000_000
    result = parse_file(path)
    assert_clean(result)
    assert [r.name for r in result.references] == ["big.safetensors"]


def test_deep_nesting_inside_a_widget_value() -> None:
    deep: object = "x.safetensors"
    for _ in range(5_000):
        deep = [deep]
    result = parse_document({"nodes": [{"id": 1, "type": "Mystery", "widgets_values": [deep]}]}, "d.json")
    assert_clean(result)


def test_deeply_nested_json_text() -> None:
    text = '{"nodes": [{"id": 1, "type": "X", "widgets_values": ' + "[" * 50_000 + "]" * 50_000 + "}]}"
    assert_clean(parse_bytes(text.encode(), "deep.json"))


CAFE = '{"nodes": [{"id": 1, "type": "LoraLoader", "widgets_values": ["café.safetensors", 1, 1]}]}'


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "cp1252"])
def test_text_encodings(encoding: str) -> None:
    result = parse_bytes(CAFE.encode(encoding), "enc.json")
    assert_clean(result)
    (ref,) = result.references
    assert ref.name == "café.safetensors"


def test_decompression_bomb_in_png_is_refused() -> None:
    packer = zlib.compressobj(1)
    block = b"A" * (1024 * 1024)
    bomb = b"".join(packer.compress(block) for _ in range(80)) + packer.flush()
    chunk = media.png_chunk(b"zTXt", b"workflow\x00\x00" + bomb)
    result = parse_bytes(media.png(chunk), "bomb.png")
    assert_clean(result)
    assert result.error is not None


@pytest.mark.parametrize(
    "doc",
    [
        {"nodes": {"1": {"type": "VAELoader"}}},
        {"nodes": ["x", 1, None, [], {"type": 5}, {"type": "VAELoader", "widgets_values": "ae.safetensors"}]},
        {"nodes": [{"id": [1], "type": "VAELoader", "mode": [4], "widgets_values": {"vae_name": ["a"]}}]},
        {
            "nodes": [
                {"id": 1, "type": "UNETLoader", "inputs": "nope", "properties": [], "widgets_values": None}
            ]
        },
        {
            "nodes": [
                {"id": 1, "type": "UNETLoader", "properties": {"models": [None, {"name": 3}, {"name": ""}]}}
            ]
        },
        {"nodes": [], "definitions": {"subgraphs": [{"id": "a", "nodes": [{"id": 1, "type": "a"}]}]}},
        {
            "nodes": [{"id": 1, "type": "a"}],
            "definitions": {"subgraphs": [{"id": "a", "nodes": [{"id": 2, "type": "a"}]}]},
        },
        {
            "nodes": [
                {"id": 1, "type": "s", "widgets_values": [1], "properties": {"proxyWidgets": [None, [1]]}}
            ],
            "definitions": {
                "subgraphs": [
                    {
                        "id": "s",
                        "inputs": [None, {"name": "x", "linkIds": [None, 9]}],
                        "links": [None],
                        "nodes": [{"id": 2, "type": "VAELoader", "widgets_values": ["v.safetensors"]}],
                    }
                ]
            },
        },
        {
            "nodes": [{"id": 1, "type": "workflow>g"}],
            "extra": {"groupNodes": {"g": {"nodes": "bad"}, "h": 3}},
        },
        {"nodes": [], "models": [{"name": "m.safetensors", "directory": 7, "url": 8}, "x", None]},
        {"prompt": {"1": {"class_type": "VAELoader", "inputs": None}}, "extra_data": {"extra_pnginfo": 5}},
        {"1": {"class_type": "LoraLoader", "inputs": {"lora_name": ["2", 0]}}, "2": "junk"},
    ],
)
def test_adversarial_shapes(doc: object) -> None:
    assert_clean(parse_document(doc, "adv.json"))


def test_self_nesting_subgraph_is_not_expanded_forever() -> None:
    doc = {
        "nodes": [{"id": 1, "type": "loop"}],
        "definitions": {
            "subgraphs": [
                {
                    "id": "loop",
                    "nodes": [
                        {"id": 2, "type": "loop"},
                        {"id": 3, "type": "VAELoader", "widgets_values": ["v.safetensors"]},
                    ],
                }
            ]
        },
    }
    result = parse_document(doc, "loop.json")
    assert_clean(result)
    assert [r.node_id for r in result.references] == ["1:3"]


# --- property-based ---------------------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
model_names = st.sampled_from(["a.safetensors", "sub\\b.ckpt", "None", "Baked VAE", "", "c.gguf", "x.png"])
json_values = st.recursive(
    json_scalars | model_names,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
node_types = st.sampled_from(
    [
        "CheckpointLoaderSimple",
        "LoraLoader",
        "Power Lora Loader (rgthree)",
        "Note",
        "workflow>g",
        "sg",
        "Unknown",
        "",
    ]
)
ui_nodes = st.fixed_dictionaries(
    {"type": node_types | json_values},
    optional={
        "id": st.integers(-5, 50) | st.text(max_size=5) | json_values,
        "mode": st.sampled_from([0, 2, 4]) | json_values,
        "widgets_values": st.lists(json_values, max_size=6)
        | st.dictionaries(st.text(max_size=8), json_values, max_size=4)
        | json_values,
        "inputs": st.lists(
            st.fixed_dictionaries({"name": json_values}, optional={"widget": json_values}), max_size=3
        )
        | json_values,
        "properties": st.fixed_dictionaries({}, optional={"models": json_values, "proxyWidgets": json_values})
        | json_values,
    },
)
ui_docs = st.fixed_dictionaries(
    {"nodes": st.lists(ui_nodes | json_values, max_size=6)},
    optional={
        "definitions": st.fixed_dictionaries(
            {
                "subgraphs": st.lists(
                    st.fixed_dictionaries(
                        {"id": st.just("sg") | json_values, "nodes": st.lists(ui_nodes, max_size=4)},
                        optional={"inputs": json_values, "links": json_values},
                    ),
                    max_size=2,
                )
                | json_values
            }
        )
        | json_values,
        "extra": st.fixed_dictionaries(
            {
                "groupNodes": st.dictionaries(
                    st.just("g"),
                    json_values | st.fixed_dictionaries({"nodes": st.lists(ui_nodes, max_size=3)}),
                    max_size=1,
                )
            }
        )
        | json_values,
        "models": json_values,
        "version": json_values,
    },
)
api_docs = st.dictionaries(
    st.text(max_size=5),
    st.fixed_dictionaries(
        {"class_type": node_types | json_values},
        optional={"inputs": st.dictionaries(st.text(max_size=10), json_values, max_size=4) | json_values},
    )
    | json_values,
    max_size=5,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        json_values, ui_docs, api_docs, st.fixed_dictionaries({"prompt": api_docs, "extra_data": json_values})
    )
)
def test_parse_document_never_raises(doc: object) -> None:
    result = parse_document(doc, "h.json")
    assert_clean(result)
    keys = [(r.node_id, r.name.replace("\\", "/")) for r in result.references]
    assert len(keys) == len(set(keys))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_parse_bytes_never_raises(data: bytes) -> None:
    assert_clean(parse_bytes(data, "b.bin"))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=120))
def test_png_and_webp_garbage_never_raises(tail: bytes) -> None:
    assert_clean(parse_bytes(media.PNG_SIGNATURE + tail, "g.png"))
    assert_clean(parse_bytes(b"RIFF" + len(tail).to_bytes(4, "little") + b"WEBP" + tail, "g.webp"))
    assert_clean(parse_bytes(media.webp(b"Exif\x00\x00" + tail), "e.webp"))


@given(st.text(max_size=40))
def test_looks_like_model_is_total(text: str) -> None:
    heuristics.looks_like_model(text)
    heuristics.lora_tags(text)
    heuristics.embedding_names(text)
    heuristics.model_urls(text)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("model.safetensors", True),
        ("sub\\dir\\model.GGUF", True),
        ("face_yolov8m.pt", True),
        (".safetensors", False),
        ("https://x/model.safetensors", False),
        ("None", False),
        ("photo.png", False),
        ("out.safetensors [output]", False),
        ("line1\nmodel.safetensors", False),
        (5, False),
    ],
)
def test_looks_like_model(value: object, expected: bool) -> None:
    assert heuristics.looks_like_model(value) is expected


def test_text_scanners() -> None:
    assert heuristics.lora_tags("x <lora:a/b:0.5> <LORA:c> <lora::1>") == ["a/b", "c"]
    assert heuristics.embedding_names("(embedding:bad_hands:1.2), embedding:neg.pt,") == [
        "bad_hands",
        "neg.pt",
    ]
    assert heuristics.model_urls("see https://hf.co/r/resolve/main/m%20x.safetensors?download=true.") == [
        ("https://hf.co/r/resolve/main/m%20x.safetensors?download=true", "m x.safetensors")
    ]


def test_a_broken_link_in_a_note_does_not_stop_the_scan() -> None:
    # urlsplit rejects a bracketed host that never closes; a note is free text and may hold anything.
    doc = {
        "version": 0.4,
        "nodes": [
            {"id": 1, "type": "Note", "widgets_values": ["see http://[abc and https://[::1/x.safetensors"]},
            {"id": 2, "type": "VAELoader", "widgets_values": ["ae.safetensors"]},
        ],
    }
    result = parse_document(doc, "broken-link.json")
    assert result.error is None
    assert [(r.name, r.directory) for r in result.references] == [("ae.safetensors", "vae")]

"""Image reference parsing, normalization and registry prefix matching."""

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from imagesync.matching import is_managed, parse_prefix
from imagesync.reference import InvalidReference, normalize, parse_reference

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("given_ref", "expected"),
    [
        ("nginx", "docker.io/library/nginx:latest"),
        ("nginx:1.25", "docker.io/library/nginx:1.25"),
        ("library/nginx", "docker.io/library/nginx:latest"),
        ("docker.io/nginx", "docker.io/library/nginx:latest"),
        ("index.docker.io/library/nginx:1", "docker.io/library/nginx:1"),
        ("team/app:2", "docker.io/team/app:2"),
        ("nvcr.io/nvidia/pytorch:24.08-py3", "nvcr.io/nvidia/pytorch:24.08-py3"),
        ("harbor.example.internal:8443/ml/train", "harbor.example.internal:8443/ml/train:latest"),
        ("localhost/app", "localhost/app:latest"),
        ("localhost:5000/app:dev", "localhost:5000/app:dev"),
        ("[::1]:5000/app:1", "[::1]:5000/app:1"),
        ("HARBOR.Example.Internal/ml/app:1", "harbor.example.internal/ml/app:1"),
        (f"nginx@{DIGEST}", f"docker.io/library/nginx@{DIGEST}"),
        (f"nvcr.io/nvidia/cuda:12.4@{DIGEST}", f"nvcr.io/nvidia/cuda:12.4@{DIGEST}"),
        ("a/b__c/d-e.f_g:Tag_1.0-x", "docker.io/a/b__c/d-e.f_g:Tag_1.0-x"),
    ],
)
def test_normalizes_like_the_runtime(given_ref: str, expected: str) -> None:
    assert normalize(given_ref) == expected


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("", "empty"),
        (" nginx", "white space"),
        ("Nginx", "lowercase"),
        ("harbor.example.internal/ML/app", "lowercase"),
        ("nginx:", "tag"),
        ("nginx:-bad", "tag"),
        ("nginx:" + "t" * 129, "tag"),
        ("nginx@sha256:abc", "digest"),
        ("nginx@sha256:" + "a" * 63, "digest"),
        ("a//b", "path"),
        ("-bad/app", "path"),
        ("app_", "path"),
        ("host-.io/app", "host"),
        ("x.io/" + "a" * 255, "longer than 255"),
    ],
)
def test_rejects_invalid_references_with_a_reason(bad: str, reason: str) -> None:
    with pytest.raises(InvalidReference) as info:
        parse_reference(bad)
    assert reason in str(info.value)


def test_latest_detection() -> None:
    assert parse_reference("nginx").implicit_latest
    assert parse_reference("nginx:latest").implicit_latest
    assert not parse_reference("nginx:1").implicit_latest
    assert not parse_reference(f"nginx@{DIGEST}").implicit_latest


@pytest.mark.parametrize(
    ("prefix", "image", "managed"),
    [
        ("nvcr.io/nvidia", "nvcr.io/nvidia/pytorch:24.01-py3", True),
        ("nvcr.io/nvidia", "nvcr.io/nvidian/x", False),
        ("nvcr.io/nvidia", "nvcr.io/nvidia", True),
        ("nvcr.io/nvidia", "NVCR.IO/nvidia/cuda:12", True),
        ("harbor.example.internal", "harbor.example.internal/lib/app:1", True),
        ("harbor.example.internal", "harbor.example.internal.evil.io/x", False),
        ("harbor.example.internal", "harbor.example.internal:8443/x", False),
        ("harbor.example.internal:8443", "harbor.example.internal:8443/x", True),
        ("harbor.example.internal:8443", "harbor.example.internal/x", False),
        ("docker.io/library", "busybox:1.36", True),
        ("index.docker.io", "nginx", True),
        ("harbor.example.internal", "not a reference", False),
    ],
)
def test_prefix_matches_whole_segments(prefix: str, image: str, managed: bool) -> None:
    assert (is_managed(image, [parse_prefix(prefix)]) is not None) is managed


@pytest.mark.parametrize("bad", ["", "nvidia/cuda", "nvcr.io/NVIDIA", "bad host/x"])
def test_rejects_bad_prefixes(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_prefix(bad)


_component = st.from_regex(r"[a-z0-9]{1,8}([._-][a-z0-9]{1,8}){0,2}", fullmatch=True)
_tag = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)


@given(
    host=st.sampled_from(["", "nvcr.io/", "harbor.example.internal:8443/", "localhost/"]),
    path=st.lists(_component, min_size=1, max_size=4),
    tag=st.none() | _tag,
)
def test_normalization_is_idempotent(host: str, path: list[str], tag: str | None) -> None:
    # Without a host, a first component with a dot would be read as one (Docker's rule).
    assume(host or "." not in path[0])
    text = host + "/".join(path) + (f":{tag}" if tag else "")
    once = normalize(text)
    assert normalize(once) == once
    assert once.endswith(f":{tag or 'latest'}")


@pytest.mark.parametrize(
    "bad",
    [
        "x:tést",
        "x:日本",
        "x\n:1",
        "x:1\n",
        "nvcr.io/nvidia/cuda:12\n",
        "nvcr.io/nvidia/cud\u0430:12",  # a Cyrillic a
        "nvcr.io/nvidia/cuda:1\u00b2",  # a superscript digit is a Unicode digit
        "nvcr.io/nvidia/cuda:\uff11",  # a full-width digit
        "nvcr.io/nvidia/cuda:1\x00",
        "nvcr.io\n/nvidia/cuda:1",
        "nvcr.io/nvidia\t/cuda:1",
        f"nginx@{DIGEST}\n",
        "x:" + "1" * 2000,
    ],
)
def test_refuses_non_ascii_control_characters_and_trailing_newlines(bad: str) -> None:
    with pytest.raises(InvalidReference):
        parse_reference(bad)
    assert is_managed(bad, [parse_prefix("nvcr.io/nvidia"), parse_prefix("docker.io")]) is None


# Everything the grammar allows anywhere in a reference; any other character is refused.
_GRAMMAR_CHARACTERS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/:@[]+"
)
_valid_reference = st.builds(
    lambda host, path, tag: host + "/".join(path) + (f":{tag}" if tag else ""),
    st.sampled_from(["", "nvcr.io/", "harbor.example.internal:8443/", "localhost/"]),
    st.lists(_component, min_size=1, max_size=4),
    st.none() | _tag,
).filter(lambda text: "." not in text.split("/")[0] or "/" in text)
_foreign = st.characters(
    blacklist_characters=sorted(_GRAMMAR_CHARACTERS), blacklist_categories=()
) | st.sampled_from(["\n", "\r", "\t", "\x00", "\x7f", "é", "日", "\u0660", "\uff11"])


@given(reference=_valid_reference, foreign=_foreign, data=st.data())
def test_any_foreign_character_anywhere_is_refused(
    reference: str, foreign: str, data: st.DataObject
) -> None:
    position = data.draw(st.integers(min_value=0, max_value=len(reference)))
    spoiled = reference[:position] + foreign + reference[position:]
    with pytest.raises(InvalidReference):
        parse_reference(spoiled)


@given(text=st.text(min_size=1, max_size=80))
def test_whatever_parses_is_ascii_and_normalizes_to_itself(text: str) -> None:
    try:
        once = normalize(text)
    except InvalidReference:
        return
    assert text.isascii() and set(text) <= _GRAMMAR_CHARACTERS
    assert once.isascii() and "\n" not in once
    assert normalize(once) == once

"""One refusal type: every parser and checker of the store raises ``_refused.Refused``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from model_store import _fs
from model_store._json import parse_json
from model_store._limits import StoreLimits
from model_store._refused import Refused
from model_store._tree_links import check_links
from model_store._ubjson import parse_ubjson
from model_store._zipcheck import check_zip


def test_the_reason_is_the_message_and_the_file_prefixes_it() -> None:
    bare = Refused("a Loop of 10 iterations")
    assert (str(bare), bare.reason, bare.file) == ("a Loop of 10 iterations", bare.reason, None)
    named = Refused("is a symlink", file="model.onnx")
    assert (str(named), named.reason, named.file) == (
        "model.onnx: is a symlink",
        "is a symlink",
        "model.onnx",
    )
    assert isinstance(named, ValueError)


@pytest.mark.parametrize(
    "refuse",
    [
        lambda: parse_json(b"{", max_bytes=100, max_depth=4),
        lambda: parse_ubjson(b"\xff", max_depth=4),
        lambda: check_zip(b"not a zip", StoreLimits()),
        lambda: check_links(np.array([1, 0]), np.array([1, 0]), np.array([True, True]), "tree 0"),
    ],
    ids=["json", "ubjson", "zip", "links"],
)
def test_each_parser_refuses_with_the_one_type(refuse: object) -> None:
    with pytest.raises(Refused):
        refuse()  # type: ignore[operator]


def test_a_path_refusal_names_the_file(tmp_path: Path) -> None:
    root = str(tmp_path)
    os.symlink("/etc/hostname", os.path.join(root, "model.onnx"))
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(Refused) as info:
            _fs.read_regular(fd, "model.onnx", max_bytes=100)
    finally:
        os.close(fd)
    assert (info.value.file, info.value.reason) == ("model.onnx", "is a symlink")

"""The model libraries import beside the CPU torch, and a missing one is a one-line
LandscapeError."""

import importlib.util
import subprocess
import sys

import pytest

from landscape.errors import LandscapeError
from landscape.models.libraries import import_library


def test_a_missing_library_is_a_landscape_error():
    with pytest.raises(LandscapeError, match="cannot import no_such_model_library"):
        import_library("no_such_model_library")


@pytest.mark.slow
def test_libraries_import_in_a_fresh_process():
    """In a process of its own, so that nothing imported earlier in the test session has prepared
    anything."""
    if importlib.util.find_spec("timm") is None or importlib.util.find_spec("transformers") is None:
        pytest.skip(
            "timm or transformers is not installed (`make install` installs setup.cfg's `models` "
            "extra)"
        )
    code = (
        "from landscape.models.libraries import import_library; import_library('timm'); "
        "import torchvision, transformers; from transformers import BertForSequenceClassification; "
        "print('ok')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=170)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]

"""Every shipped YAML config parses into its CLI's arguments (a renamed option breaks this, not a user's run)."""
import importlib
from pathlib import Path

import pytest

from inference.config import parse_args

REPO = Path(__file__).resolve().parents[1]
CLIS = {"generate_": "data_generation.{name}", "evaluate_": "evaluation.evaluate"}


def _configs():
    for path in sorted((REPO / "configs").glob("*/*.yaml")):
        for prefix, module in CLIS.items():
            if path.name.startswith(prefix) and path.parent.name != "prompts":
                yield path, module.format(name=path.stem)


@pytest.mark.parametrize("path, module", list(_configs()), ids=lambda x: str(x).split("configs/")[-1])
def test_config_parses(path, module):
    mod = importlib.import_module(module)
    arg_classes = [v for k, v in vars(mod).items() if k.endswith("Arguments") and getattr(v, "__module__", "") == mod.__name__]
    assert len(arg_classes) == 1
    parse_args(arg_classes[0], ["--config", str(path)])

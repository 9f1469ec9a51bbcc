"""Bad CogAgent configs get one line naming the key, the value and what was expected; shipped names resolve."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tracer.cogagent.config import CONFIG_ROOT, cross_tokens, load_config
from tracer.cogvlm.config import ConfigError


def _write(tmp_path: Path, change: dict[str, Any], drop: tuple[str, ...] = ()) -> Path:
    values = json.loads((CONFIG_ROOT / "tiny" / "cogagent-chat" / "model_config.json").read_text())
    values.update(change)
    for key in drop:
        del values[key]
    (tmp_path / "model_config.json").write_text(json.dumps(values))
    return tmp_path


@pytest.mark.parametrize("spec", ["tiny/cogagent-chat", "configs/full/cogagent-vqa", "full/cogagent-chat"])
def test_shipped_names_resolve(spec: str) -> None:
    config = load_config(spec)
    assert config.values["model_class"] == "CogAgentModel" and cross_tokens(config.values) == 6400
    assert config.eva["image_size"] == [224, 224] and config.values["image_length"] == 256


def test_templates_follow_the_checkpoints() -> None:
    assert load_config("full/cogagent-chat").values["text_processor_version"] == "chat"
    assert load_config("tiny/cogagent-vqa").values["text_processor_version"] == "vqa"


@pytest.mark.parametrize(("change", "drop", "message"), [
    ({}, ("cross_image_pix",), "missing required key 'cross_image_pix' (the high-resolution image's side"),
    ({"cross_image_pix": 1000}, (), "key 'cross_image_pix' = 1000: expected a multiple of the high-resolution "
                                    "patch size 14 (e.g. 994 or 1008)"),
    ({"cross_image_pix": "1120"}, (), "key 'cross_image_pix' = '1120': expected a positive integer"),
    ({"cross_attn_hidden_size": 48}, (), "key 'cross_attn_hidden_size' = 48: expected the high-resolution encoder's "
                                         "width cross_vision_args.width = 32"),
    ({"image_length": 1225}, (), "key 'image_length' = 1225: expected (image_size / patch_size)^2 = (224/14)*(224/14) "
                                 "= 256"),
    ({"is_decoder": [True]}, (), "key 'is_decoder' = [True]: expected true, or a list of 2 trues"),
    ({"cross_vision_args": {"width": 30, "head_width": 16}}, (),
     "key 'cross_vision_args.width' = 30: expected a multiple of cross_vision_args.head_width = 16"),
    ({"model_class": "CogVLMModel"}, (), "key 'model_class' = 'CogVLMModel': expected one of ['CogAgentModel']"),
])
def test_bad_configs_are_one_line(tmp_path: Path, change: dict[str, Any], drop: tuple[str, ...], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, change, drop))
    text = str(info.value)
    assert message in text and "\n" not in text and str(tmp_path) in text


@pytest.mark.parametrize("command", [["build"], ["shapes"], ["chat", "--query", "hi"], ["report", "-o", "OUT"]])
def test_cli_refuses_a_bad_cogagent_config_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       command: list[str]) -> None:
    from tracer.cli import main

    (tmp_path / "cfg").mkdir()
    folder = _write(tmp_path / "cfg", {"cross_image_pix": 1000})
    argv = [command[0], str(folder), *[str(tmp_path / "out") if a == "OUT" else a for a in command[1:]]]
    assert main(argv) != 0
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "key 'cross_image_pix' = 1000: expected a multiple" in err
    assert not (tmp_path / "out").exists()  # nothing half-written

"""Safetensors only: a model folder whose weights are a pickle is refused before anything is loaded.

``pytorch_model.bin`` copies of the tiny model: a plain one (it used to load and train) and a malicious one
whose unpickling writes a marker file. ``eval``, ``dpo`` and ``rm train`` stop with exit code 2 and one
line that names the folder and gives the conversion command; the pickle is never opened, nothing is
written to --out.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import PAIR_ROWS, run_cli, write_jsonl
from tether.errors import ModelError


class _Trap:
    """Unpickling this runs code: it writes ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def _pickle_folder(tiny_model_dir: Path, dest: Path, payload: dict) -> Path:
    shutil.copytree(tiny_model_dir, dest)
    (dest / "model.safetensors").unlink()
    torch.save(payload, dest / "pytorch_model.bin")
    return dest


@pytest.fixture(scope="module")
def pickle_dirs(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{"plain": a pickle-only copy of the tiny model, "evil": one whose pickle runs code, "marker": ...}."""
    root = tmp_path_factory.mktemp("pickles")
    state = load_file(str(tiny_model_dir / "model.safetensors"))
    marker = root / "pwned"
    plain = _pickle_folder(tiny_model_dir, root / "plain", state)
    evil = _pickle_folder(tiny_model_dir, root / "evil", {**state, "trap": _Trap(marker)})
    return {"plain": plain, "evil": evil, "marker": marker}


def test_the_malicious_pickle_really_runs_code_when_unpickled(tmp_path):
    """The fixture's trap is live: a plain (not weights-only) load runs it."""
    marker = tmp_path / "ran"
    torch.save({"trap": _Trap(marker)}, tmp_path / "trap.bin")
    torch.load(tmp_path / "trap.bin", weights_only=False)
    assert marker.read_text() == "pwned"


def _command(name: str, model: Path, out: Path, tmp_path: Path) -> list[str]:
    if name == "eval":
        data = tmp_path / "advbench.csv"
        data.write_text("goal,target\n" + "".join(f"harmful request {i},Sure\n" for i in range(3)))
        where = ["--data", str(data), "--model", str(model), "--out", str(out)]
        return ["eval", "--suite", "harmful", *where, "--judge", "phrases", "--max-new-tokens", "4", "--no-progress"]
    pairs = write_jsonl(tmp_path / "pairs.jsonl", PAIR_ROWS)
    train = ["--model", str(model), "--data", str(pairs), "--out", str(out), "--max-steps", "1", "--no-progress"]
    return [*name.split(), *train, "--batch-size", "2"]


@pytest.mark.parametrize("kind", ["plain", "evil"])
@pytest.mark.parametrize("command", ["eval", "dpo", "rm train"])
def test_pickle_weights_are_refused_with_one_line_and_nothing_written(tmp_path, pickle_dirs, command, kind):
    model, marker = pickle_dirs[kind], pickle_dirs["marker"]
    out = tmp_path / "out"
    result = run_cli(*_command(command, model, out, tmp_path))
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and len(lines) == 1, result.stderr[-3000:]
    assert str(model) in lines[0] and "pickle" in lines[0] and "pytorch_model.bin" in lines[0], lines[0]
    assert "save_file" in lines[0] and "weights_only=True" in lines[0], "the conversion command is given"
    assert not marker.exists(), "the pickle was unpickled"
    assert not out.exists(), "nothing is written to --out"


def test_the_conversion_command_in_the_error_works(tmp_path, tiny_model_dir, pickle_dirs):
    from tether.models.loading import load_model

    folder = shutil.copytree(pickle_dirs["plain"], tmp_path / "converted")
    with pytest.raises(ModelError) as caught:
        load_model(str(folder))
    command = str(caught.value).split("convert it: ", 1)[1]
    argv = shlex.split(command)
    assert argv[0] == "python"
    subprocess.run([sys.executable, *argv[1:]], check=True, cwd=tmp_path)
    converted = load_model(str(folder))
    original = load_model(str(tiny_model_dir))
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert torch.equal(converted(ids).logits, original(ids).logits)


def test_an_adapter_folder_with_pickle_weights_is_refused(tmp_path, tiny_model_dir):
    from tether.models.loading import load_model
    from tether.models.reward import load_scalar_model

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    config = {"base_model_name_or_path": str(tiny_model_dir), "peft_type": "LORA", "r": 2, "target_modules": ["q_proj"]}
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    torch.save({}, adapter / "adapter_model.bin")
    with pytest.raises(ModelError, match=r"pickle weights \(adapter_model\.bin\)") as caught:
        load_model(str(adapter))
    assert "adapter_model.safetensors" in str(caught.value)
    with pytest.raises(ModelError, match="pickle"):
        load_scalar_model(str(adapter), pad_token_id=0)


def test_a_base_model_with_pickle_weights_under_an_adapter_is_refused(tmp_path, pickle_dirs):
    from tether.models.loading import load_model

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(pickle_dirs["plain"])}))
    (adapter / "adapter_model.safetensors").write_bytes(b"")
    with pytest.raises(ModelError, match=f"{pickle_dirs['plain']} holds pickle weights"):
        load_model(str(adapter))


def test_config_naming_a_pickle_as_its_weights_is_refused(tmp_path, tiny_model_dir):
    """transformers follows ``transformers_weights`` in config.json, even to ``adapter_model.bin``."""
    from tether.models.loading import load_model

    folder = shutil.copytree(tiny_model_dir, tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "transformers_weights": "adapter_model.bin"}))
    with pytest.raises(ModelError, match="reads only safetensors"):
        load_model(str(folder))


def test_every_loader_passes_use_safetensors_and_a_hub_pickle_is_a_clear_error(monkeypatch):
    """A hub id has no folder to check: transformers gets use_safetensors=True and its error is translated."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from tether.models.loading import load_model
    from tether.models.reward import load_scalar_model

    seen = []

    def refuse(spec, **kwargs):
        seen.append(kwargs)
        raise OSError(
            f"{spec} does not appear to have a file named model.safetensors or model.safetensors.index.json "
            "and thus cannot be loaded with `safetensors`. Please do not set `use_safetensors=True`."
        )

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", refuse)
    monkeypatch.setattr(AutoModelForSequenceClassification, "from_pretrained", refuse)
    with pytest.raises(ModelError, match="no safetensors weights on the hub; tether refuses pickle weights"):
        load_model("some-org/pickled-model")
    with pytest.raises(ModelError, match="no safetensors weights on the hub"):
        load_scalar_model("some-org/pickled-model", pad_token_id=0)
    assert [kwargs.get("use_safetensors") for kwargs in seen] == [True, True]


def test_transformers_itself_refuses_the_pickle_with_our_keywords(pickle_dirs):
    """The keyword is the right one for this transformers: without tether's own check it still fails."""
    from transformers import AutoModelForCausalLM

    from tether.models.weights import SAFE_LOAD

    with pytest.raises(OSError, match=r"model\.safetensors"):
        AutoModelForCausalLM.from_pretrained(pickle_dirs["evil"], **SAFE_LOAD)
    assert not pickle_dirs["marker"].exists()


def test_classifiers_refuse_pickle_folders(pickle_dirs):
    from tether.evals.toxicity import ToxicityScorer
    from tether.judges.embedding import SentenceEmbedder

    with pytest.raises(ModelError, match="pickle"):
        ToxicityScorer(str(pickle_dirs["evil"]))
    with pytest.raises(ModelError, match="pickle"):
        SentenceEmbedder(pickle_dirs["evil"])
    assert not pickle_dirs["marker"].exists()

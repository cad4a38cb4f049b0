"""Loading by registry name, directory, GGUF and hub id; clear errors when weights are absent."""

import os

import pytest
import torch

from analysis.core.errors import MinitronError, WeightsNotFound
from analysis.models.adapter import DecoderAdapter
from analysis.models.loading import LoadConfig, load_model, save_safetensors
from tests.helpers import run_cli, tiny_model


def test_embedded_default_loads_with_tokenizer(smol):
    assert type(smol.model).__name__ == "LlamaForCausalLM"
    assert smol.adapter.tied and smol.adapter.num_layers == 30
    assert smol.provenance["kind"] == "gguf" and smol.provenance["params"] == 134515008
    ids = smol.tokenizer("def main():\n    return 0", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = smol.model(torch.tensor([ids])).logits
    loss = torch.nn.functional.cross_entropy(logits[0, :-1], torch.tensor(ids[1:]))
    assert loss.item() < 5.0  # a real language model, not random weights (log(49152) = 10.8)


def test_the_defaults_quantization_is_recorded_as_the_gguf_file_states_it(smol):
    """Provenance says how the weights were stored, read here independently with gguf's own reader."""
    import gguf

    from analysis.models.gguf_cache import locate_gguf
    from analysis.models.registry import get

    reader = gguf.GGUFReader(locate_gguf(get("smollm2-135m")))
    field = reader.fields["general.file_type"]
    file_type = gguf.LlamaFileType(int(field.parts[field.data[0]][0])).name  # MOSTLY_Q4_1
    source = smol.provenance["source_format"]
    assert file_type == "MOSTLY_" + source["quantization"] == "MOSTLY_Q4_1"
    assert source["dequantized_to"] == "float32" and sum(source["tensor_types"].values()) == len(reader.tensors)
    assert smol.model.dtype == torch.float32


@pytest.mark.parametrize("model", ["8B", "minitron-4b", "15B"])
def test_missing_weights_fail_cleanly(model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    r = run_cli("analyze", "--model", model, "--out", tmp_path / "run")
    assert r.code == 2
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "--model /path" in lines[0]
    assert os.listdir(tmp_path) == []


def test_unknown_model_fails_cleanly(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = run_cli("analyze", "--model", "nonesuch")
    assert r.code == 2 and "unknown model 'nonesuch'" in r.err and r.err.count("\n") == 1


def test_local_directory_round_trip(tmp_path):
    model = tiny_model("nemotron")
    model.config.save_pretrained(tmp_path)
    save_safetensors(model, tmp_path)
    lm = load_model(LoadConfig(model=str(tmp_path), device="cpu"))
    x = torch.randint(0, 97, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(lm.model(x).logits, model(x).logits)
    assert lm.provenance["kind"] == "directory" and len(lm.provenance["weights_fingerprint"]) == 16


def test_pickle_weights_refused_unless_allowed(tmp_path):
    model = tiny_model("llama")
    model.config.save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(MinitronError, match="--allow-pickle"):
        load_model(LoadConfig(model=str(tmp_path), device="cpu"))


def test_directory_without_config(tmp_path):
    with pytest.raises(WeightsNotFound, match="no config.json"):
        load_model(LoadConfig(model=str(tmp_path), device="cpu"))


def test_random_init_builds_real_weights_on_cpu():
    lm = load_model(LoadConfig(model="smollm2-135m", random_init=True, device="cpu", seed=3))
    assert lm.tokenizer is None and lm.provenance["kind"] == "random-init"
    assert DecoderAdapter(lm.model).num_layers == 30


def test_adapter_run_from_matches_full_forward(tiny):
    ad = DecoderAdapter(tiny)
    x = torch.randint(0, tiny.config.vocab_size, (2, 11))
    with torch.no_grad():
        h = ad.run_from(ad.embed(x), range(ad.num_layers))
        torch.testing.assert_close(ad.lm_head(h), tiny(x).logits)
    assert ad.num_layers == 4  # restored after keep_layers


def test_device_map_auto_loads_and_matches(tiny_dirs):
    """``--device-map auto`` (accelerate) places the model itself; on a CPU-only box it all lands on CPU."""
    llama_dir = tiny_dirs["llama"][0]
    ids = torch.randint(0, 49152, (1, 12))
    plain = load_model(LoadConfig(model=str(llama_dir), device="cpu"))
    mapped = load_model(LoadConfig(model=str(llama_dir), device_map="auto"))
    rand = load_model(LoadConfig(model=str(llama_dir), device_map="auto", random_init=True))
    assert mapped.provenance["device_map"] == "auto"
    with torch.no_grad():
        torch.testing.assert_close(mapped.model(ids).logits, plain.model(ids).logits)
        assert torch.isfinite(rand.model(ids).logits).all()

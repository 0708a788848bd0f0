"""The registry resolves what users type into checkpoints, and refuses what it cannot."""

from __future__ import annotations

import pytest

from kanana_eval.config.registry import load_registry
from kanana_eval.core.errors import UnknownModelError


def test_registry_key_resolves_to_hub_checkpoint_with_readme_row():
    (ref,) = load_registry().resolve("kanana-1.5-8b-base")
    assert ref.hub_id == "kakaocorp/kanana-1.5-8b-base"
    assert ref.entry.kind == "base" and ref.protocols == ("base",)
    assert ref.readme_rows == ("Kanana-1.5-8B",)
    assert ref.slug == "kanana-1.5-8b-base"


def test_family_alias_runs_base_and_instruct():
    refs = load_registry().resolve("kanana-1.5-8b")
    assert [r.entry.key for r in refs] == ["kanana-1.5-8b-base", "kanana-1.5-8b-instruct-2505"]
    assert [r.protocols for r in refs] == [("base",), ("instruct",)]


def test_full_hub_id_of_a_registry_model_uses_the_entry():
    (ref,) = load_registry().resolve("kakaocorp/kanana-nano-2.1b-base")
    assert ref.entry.key == "kanana-nano-2.1b-base"
    assert ref.entry.license == "CC-BY-NC-4.0"


def test_other_hub_id_and_local_folder(tmp_path):
    (hub,) = load_registry().resolve("Qwen/Qwen2.5-7B")
    assert hub.hub_id == "Qwen/Qwen2.5-7B" and hub.entry is None and hub.slug == "qwen-qwen2.5-7b"
    (tmp_path / "config.json").write_text("{}")
    (local,) = load_registry().resolve(str(tmp_path))
    assert local.path == tmp_path.resolve() and local.protocols == ("base",)


def test_folder_without_config_and_unknown_name_fail_clearly(tmp_path):
    with pytest.raises(UnknownModelError, match="no config.json"):
        load_registry().resolve(str(tmp_path))
    with pytest.raises(UnknownModelError, match="unknown model 'kanana-99b'"):
        load_registry().resolve("kanana-99b")


def test_offline_entries_and_yarn_override():
    reg = load_registry()
    assert reg.models["smollm2-135m-instruct"].source == "offline"
    assert reg.models["gemma-3-270m"].kind == "base"
    assert reg.yarn_rope_scaling == {"type": "yarn", "factor": 4.4,
                                     "original_max_position_embeddings": 32768,
                                     "beta_fast": 64, "beta_slow": 2}
    every = [e for e in reg.models.values() if e.hub_id]
    assert all(e.hub_id.startswith("kakaocorp/") and e.hub_id.endswith(e.key) for e in every)

"""Tests for lowbit.config: registry, validation, dict/JSON round trips, immutability."""

import dataclasses
import enum
import json

import pytest

from lowbit.config import (
    AWQConfig,
    BnbConfig,
    EetqConfig,
    FP8Config,
    GGUFConfig,
    GPTQConfig,
    HQQConfig,
    QuantConfig,
    RTNConfig,
    TorchAoConfig,
    load_config,
    registered_configs,
)

CONFIG_CLASSES = list(registered_configs().values())
CLASS_IDS = [cls.__name__ for cls in CONFIG_CLASSES]
EXPECTED_METHODS = {
    "rtn": RTNConfig, "gptq": GPTQConfig, "awq": AWQConfig, "hqq": HQQConfig,
    "bitsandbytes": BnbConfig, "gguf": GGUFConfig, "fp8": FP8Config,
    "torchao": TorchAoConfig, "eetq": EetqConfig,
}

# Non-default but valid instances: round trips must hold off the defaults too.
NON_DEFAULT = [
    RTNConfig(bits=3, group_size=0, sym=False),
    RTNConfig(bits=8, group_size=-1),
    RTNConfig(group_size=100),
    GPTQConfig(bits=3, group_size=-1, damp_percent=0.1, desc_act=True, static_groups=True,
               mse=True, checkpoint_format="gptq_v2", hessian_dtype="float64",
               sink_weight=4.0, sink_tokens=2),
    AWQConfig(bits=3, group_size=64, zero_point=False, version="gemv", n_grid=10),
    HQQConfig(nbits=2, group_size=16, axis=0, lp_norm=1.0, beta=1, kappa=1.05, iters=5),
    HQQConfig(nbits=5, round_zero=False, quant_zero=True, quant_scale=True, view_as_float=True, early_stop=False),
    BnbConfig(load_in_4bit=False, load_in_8bit=True, llm_int8_skip_modules=("lm_head",)),
    BnbConfig(bnb_4bit_quant_type="fp4", bnb_4bit_use_double_quant=True,
              bnb_4bit_blocksize=4096, bnb_4bit_compute_dtype="bfloat16"),
    BnbConfig(load_in_4bit=False, load_in_8bit=True, llm_int8_threshold=0.0,
              llm_int8_has_fp16_weight=True),
    GGUFConfig(type="Q6_K", imatrix="imatrix.dat"),
    FP8Config(fmt="e5m2", activation_scheme="static", weight_block_size=(128, 64),
              strategy="tensor"),
    FP8Config(strategy="channel"),
    TorchAoConfig(quant_type="int8_weight_only"),
    TorchAoConfig(group_size=32),
]


@pytest.fixture(params=CONFIG_CLASSES, ids=CLASS_IDS)
def cfg_cls(request):
    return request.param


def all_instances():
    return [cls() for cls in CONFIG_CLASSES] + NON_DEFAULT


# ----------------------------------------------------------------------------- registry

def test_registry_holds_every_method():
    reg = registered_configs()
    assert reg == EXPECTED_METHODS
    for method, cls in reg.items():
        assert cls.quant_method == method
        assert issubclass(cls, QuantConfig)


def test_registered_configs_returns_a_copy():
    registered_configs()["bogus"] = RTNConfig
    assert "bogus" not in registered_configs()


def test_duplicate_quant_method_is_rejected():
    with pytest.raises(ValueError, match="rtn.*already registered"):
        @dataclasses.dataclass(frozen=True, kw_only=True)
        class Dup(QuantConfig):
            quant_method = "rtn"
    assert registered_configs()["rtn"] is RTNConfig


def test_subclass_without_quant_method_is_rejected():
    with pytest.raises(TypeError, match="quant_method"):
        class NoMethod(QuantConfig):
            pass
    assert registered_configs() == EXPECTED_METHODS


def test_base_class_is_abstract():
    with pytest.raises(TypeError, match="abstract"):
        QuantConfig()


# ----------------------------------------------------------------------------- per class

def test_default_construction(cfg_cls):
    cfg = cfg_cls()
    assert isinstance(cfg, QuantConfig)
    assert cfg == cfg_cls()
    assert repr(cfg).startswith(f"{cfg_cls.__name__}(")


def test_to_dict_has_quant_method_and_every_field(cfg_cls):
    d = cfg_cls().to_dict()
    assert d["quant_method"] == cfg_cls.quant_method
    assert set(d) == {"quant_method"} | {f.name for f in dataclasses.fields(cfg_cls)}
    json.dumps(d)  # plain JSON types only
    assert not any(isinstance(v, tuple) for v in d.values())


def test_json_round_trip(cfg_cls):
    cfg = cfg_cls()
    text = cfg.to_json()
    assert json.loads(text)["quant_method"] == cfg_cls.quant_method
    assert cfg_cls.from_json(text) == cfg
    assert QuantConfig.from_json(text) == cfg


def test_to_json_is_sorted_and_indented(cfg_cls):
    text = cfg_cls().to_json()
    keys = list(json.loads(text))
    assert keys == sorted(keys)
    assert text.startswith("{\n  \"")


def test_load_config_dispatches(cfg_cls):
    cfg = cfg_cls()
    for loaded in (load_config(cfg.to_dict()), load_config(cfg.to_json())):
        assert type(loaded) is cfg_cls
        assert loaded == cfg


def test_from_dict_without_quant_method(cfg_cls):
    d = cfg_cls().to_dict()
    del d["quant_method"]
    assert cfg_cls.from_dict(d) == cfg_cls()
    # an empty dict gives the defaults, except fields whose absence has its own meaning
    assert cfg_cls.from_dict({}) == cfg_cls(**cfg_cls._absent_means)


def test_from_dict_unknown_key_strict(cfg_cls):
    d = cfg_cls().to_dict()
    d["no_such_option"] = 1
    with pytest.raises(ValueError, match="no_such_option") as info:
        cfg_cls.from_dict(d)
    first_field = dataclasses.fields(cfg_cls)[0].name
    assert first_field in str(info.value)  # allowed names are listed
    with pytest.raises(ValueError, match="no_such_option"):
        load_config(d)


def test_from_dict_non_strict_returns_leftovers(cfg_cls):
    d = cfg_cls().to_dict()
    d["no_such_option"] = 1
    d["another"] = [1, 2]
    cfg, leftovers = cfg_cls.from_dict(d, strict=False)
    assert cfg == cfg_cls()
    assert leftovers == {"no_such_option": 1, "another": [1, 2]}
    cfg, leftovers = cfg_cls.from_dict(cfg_cls().to_dict(), strict=False)
    assert cfg == cfg_cls() and leftovers == {}


def test_from_dict_wrong_quant_method(cfg_cls):
    other = next(m for m in EXPECTED_METHODS if m != cfg_cls.quant_method)
    d = cfg_cls().to_dict()
    d["quant_method"] = other
    with pytest.raises(ValueError, match="quant_method") as info:
        cfg_cls.from_dict(d)
    assert other in str(info.value) and cfg_cls.quant_method in str(info.value)


def test_from_dict_rejects_non_mapping(cfg_cls):
    with pytest.raises(TypeError):
        cfg_cls.from_dict([("bits", 4)])


def test_frozen(cfg_cls):
    cfg = cfg_cls()
    name = dataclasses.fields(cfg_cls)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(cfg, name, getattr(cfg, name))


def test_hashable_and_equal_by_fields(cfg_cls):
    a, b = cfg_cls(), cfg_cls()
    assert a == b and hash(a) == hash(b)
    assert len({a, b}) == 1


def test_keyword_only(cfg_cls):
    with pytest.raises(TypeError):
        cfg_cls(getattr(cfg_cls(), dataclasses.fields(cfg_cls)[0].name))


def test_replace_unknown_field(cfg_cls):
    with pytest.raises(TypeError, match="no_such_option"):
        cfg_cls().replace(no_such_option=1)


def test_every_class_documents_every_field(cfg_cls):
    doc = cfg_cls.__doc__ or ""
    assert "Args:" in doc
    for f in dataclasses.fields(cfg_cls):
        assert f"{f.name} (" in doc, f"{cfg_cls.__name__} docstring misses {f.name}"


@pytest.mark.parametrize("cfg", NON_DEFAULT, ids=repr)
def test_non_default_round_trips(cfg):
    assert type(cfg).from_json(cfg.to_json()) == cfg
    assert load_config(cfg.to_dict()) == cfg
    assert hash(load_config(cfg.to_json())) == hash(cfg)
    assert cfg != type(cfg)()


def test_all_instances_hash_distinctly():
    instances = all_instances()
    assert len(set(instances)) == len(instances)


# ----------------------------------------------------------------------------- invalid values

INVALID = [
    # (class, kwargs, exception, field named in the message)
    (RTNConfig, {"bits": 9}, ValueError, "bits"),
    (RTNConfig, {"bits": 1}, ValueError, "bits"),
    (RTNConfig, {"bits": 4.0}, TypeError, "bits"),
    (RTNConfig, {"group_size": -2}, ValueError, "group_size"),
    (RTNConfig, {"sym": 1}, TypeError, "sym"),
    (GPTQConfig, {"bits": 5}, ValueError, "bits"),
    (GPTQConfig, {"bits": True}, TypeError, "bits"),
    (GPTQConfig, {"bits": "4"}, TypeError, "bits"),
    (GPTQConfig, {"bits": 4.0}, TypeError, "bits"),
    (GPTQConfig, {"group_size": 0}, ValueError, "group_size"),
    (GPTQConfig, {"damp_percent": 0}, ValueError, "damp_percent"),
    (GPTQConfig, {"damp_percent": 1.5}, ValueError, "damp_percent"),
    (GPTQConfig, {"damp_percent": float("nan")}, ValueError, "damp_percent"),
    (GPTQConfig, {"damp_percent": True}, TypeError, "damp_percent"),
    (GPTQConfig, {"desc_act": "yes"}, TypeError, "desc_act"),
    (GPTQConfig, {"block_size": 0}, ValueError, "block_size"),
    (GPTQConfig, {"damp_auto_increment": -0.1}, ValueError, "damp_auto_increment"),
    (GPTQConfig, {"checkpoint_format": "marlin"}, ValueError, "checkpoint_format"),
    (GPTQConfig, {"hessian_dtype": "float16"}, ValueError, "hessian_dtype"),
    (GPTQConfig, {"sink_weight": 0.0}, ValueError, "sink_weight"),
    (GPTQConfig, {"sink_weight": float("nan")}, ValueError, "sink_weight"),
    (GPTQConfig, {"sink_tokens": -1}, ValueError, "sink_tokens"),
    (GPTQConfig, {"sink_tokens": 1.5}, TypeError, "sink_tokens"),
    (AWQConfig, {"bits": 1}, ValueError, "bits"),
    (AWQConfig, {"group_size": -3}, ValueError, "group_size"),
    (AWQConfig, {"version": "marlin"}, ValueError, "version"),
    (AWQConfig, {"n_grid": 0}, ValueError, "n_grid"),
    (AWQConfig, {"max_chunk_memory": 0}, ValueError, "max_chunk_memory"),
    (AWQConfig, {"zero_point": None}, TypeError, "zero_point"),
    (HQQConfig, {"nbits": 7}, ValueError, "nbits"),
    (HQQConfig, {"round_zero": 1}, TypeError, "round_zero"),
    (HQQConfig, {"group_size": 0}, ValueError, "group_size"),
    (HQQConfig, {"axis": 2}, ValueError, "axis"),
    (HQQConfig, {"lp_norm": 0}, ValueError, "lp_norm"),
    (HQQConfig, {"lp_norm": 1.5}, ValueError, "lp_norm"),
    (HQQConfig, {"beta": 0.0}, ValueError, "beta"),
    (HQQConfig, {"beta": float("inf")}, ValueError, "beta"),
    (HQQConfig, {"kappa": 1.0}, ValueError, "kappa"),
    (HQQConfig, {"iters": 0}, ValueError, "iters"),
    (BnbConfig, {"load_in_4bit": True, "load_in_8bit": True}, ValueError, "load_in_8bit"),
    (BnbConfig, {"load_in_4bit": False}, ValueError, "load_in_4bit"),
    (BnbConfig, {"bnb_4bit_quant_type": "int4"}, ValueError, "bnb_4bit_quant_type"),
    (BnbConfig, {"bnb_4bit_blocksize": 48}, ValueError, "bnb_4bit_blocksize"),
    (BnbConfig, {"bnb_4bit_compute_dtype": "float64"}, ValueError, "bnb_4bit_compute_dtype"),
    (BnbConfig, {"llm_int8_threshold": -1.0}, ValueError, "llm_int8_threshold"),
    (BnbConfig, {"llm_int8_threshold": float("inf")}, ValueError, "llm_int8_threshold"),
    (BnbConfig, {"bnb_4bit_quant_storage": "bfloat16"}, ValueError, "bnb_4bit_quant_storage"),
    (BnbConfig, {"llm_int8_has_fp16_weight": 1}, TypeError, "llm_int8_has_fp16_weight"),
    (BnbConfig, {"llm_int8_skip_modules": "lm_head"}, TypeError, "llm_int8_skip_modules"),
    (BnbConfig, {"llm_int8_skip_modules": ("lm_head", 3)}, TypeError, "llm_int8_skip_modules"),
    (GGUFConfig, {"type": "Q7_K"}, ValueError, "type"),
    (GGUFConfig, {"type": "Q4_K_XL"}, ValueError, "type"),
    (GGUFConfig, {"type": 4}, TypeError, "type"),
    (GGUFConfig, {"imatrix": 3}, TypeError, "imatrix"),
    (GGUFConfig, {"imatrix": ""}, ValueError, "imatrix"),
    (FP8Config, {"fmt": "e3m4"}, ValueError, "fmt"),
    (FP8Config, {"activation_scheme": "per_token"}, ValueError, "activation_scheme"),
    (FP8Config, {"weight_block_size": (128,)}, ValueError, "weight_block_size"),
    (FP8Config, {"weight_block_size": (0, 128)}, ValueError, "weight_block_size"),
    (FP8Config, {"weight_block_size": (128.0, 128)}, TypeError, "weight_block_size"),
    (FP8Config, {"weight_block_size": 128}, TypeError, "weight_block_size"),
    (FP8Config, {"strategy": "group"}, ValueError, "strategy"),
    (FP8Config, {"weight_block_size": None}, TypeError, "weight_block_size"),
    (TorchAoConfig, {"quant_type": "int4_dynamic"}, ValueError, "quant_type"),
    (TorchAoConfig, {"group_size": 100}, ValueError, "group_size"),
    (TorchAoConfig, {"group_size": True}, TypeError, "group_size"),
    (EetqConfig, {"weights": "int4"}, ValueError, "weights"),
    (EetqConfig, {"weights": "INT8"}, ValueError, "weights"),
    (EetqConfig, {"weights": 8}, TypeError, "weights"),
]


@pytest.mark.parametrize(
    "cls, kwargs, exc, field", INVALID,
    ids=[f"{c.__name__}-{'-'.join(f'{k}={v!r}' for k, v in kw.items())}"
         for c, kw, _, _ in INVALID])
def test_invalid_values(cls, kwargs, exc, field):
    with pytest.raises(exc, match=field) as info:
        cls(**kwargs)
    msg = str(info.value)
    assert cls.__name__ in msg
    assert repr(next(iter(kwargs.values()))) in msg or "load_in" in field
    # from_dict and replace go through the same validation
    with pytest.raises(exc, match=field):
        cls.from_dict(kwargs)
    with pytest.raises(exc, match=field):
        cls().replace(**kwargs)


def test_invalid_table_covers_every_class():
    counts = {cls: sum(1 for c, *_ in INVALID if c is cls) for cls in CONFIG_CLASSES}
    assert all(n >= 3 for n in counts.values()), counts


def test_error_message_format():
    with pytest.raises(ValueError) as info:
        GPTQConfig(bits=5)
    assert str(info.value) == "GPTQConfig.bits must be one of (2, 3, 4, 8), got 5"
    with pytest.raises(TypeError) as info:
        GPTQConfig(bits=True)
    assert "GPTQConfig.bits" in str(info.value) and "(2, 3, 4, 8)" in str(info.value)
    assert "bool" in str(info.value)


# ----------------------------------------------------------------------------- specifics

def test_rtn_group_size_special_values():
    assert RTNConfig(group_size=-1).group_size == -1
    assert RTNConfig(group_size=0).group_size == 0
    assert RTNConfig(group_size=7).group_size == 7


def test_gptq_transformers_style_dict_loads_with_leftovers():
    hf = {"quant_method": "gptq", "bits": 4, "group_size": 128, "damp_percent": 0.1,
          "desc_act": False, "sym": True, "true_sequential": True, "static_groups": False,
          "tokenizer": None, "dataset": "c4", "model_seqlen": 2048}
    with pytest.raises(ValueError, match="dataset"):
        load_config(hf)
    cfg, leftovers = QuantConfig.from_dict(hf, strict=False)
    assert cfg == GPTQConfig(damp_percent=0.1, sink_weight=1.0)  # no sink_weight key: the paper's Hessian
    assert leftovers == {"tokenizer": None, "dataset": "c4", "model_seqlen": 2048}


def test_gguf_normalization_and_mixture():
    cfg = GGUFConfig(type="q4_k_m")
    assert cfg.type == "Q4_K_M"
    assert cfg == GGUFConfig(type="Q4_K_M")
    assert cfg.is_mixture
    assert GGUFConfig(type="iq4_nl").type == "IQ4_NL"
    assert GGUFConfig(type="bf16").type == "BF16"
    for t in ("Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q5_K_S", "Q5_K_M"):
        assert GGUFConfig(type=t.lower()).is_mixture
    for t in ("F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0",
              "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL"):
        assert not GGUFConfig(type=t).is_mixture
    assert GGUFConfig.from_dict({"type": "q5_k_s"}).type == "Q5_K_S"


def test_tuple_fields_survive_json():
    cfg = FP8Config(weight_block_size=(128, 128))
    assert cfg.to_dict()["weight_block_size"] == [128, 128]
    back = FP8Config.from_json(cfg.to_json())
    assert back == cfg
    assert isinstance(back.weight_block_size, tuple)
    hash(back)
    bnb = BnbConfig(llm_int8_skip_modules=("lm_head", "embed_tokens"))
    back = load_config(bnb.to_json())
    assert back == bnb and isinstance(back.llm_int8_skip_modules, tuple)


def test_lists_become_tuples_on_construction():
    cfg = FP8Config(weight_block_size=[64, 32])
    assert cfg.weight_block_size == (64, 32)
    assert BnbConfig(llm_int8_skip_modules=["lm_head"]).llm_int8_skip_modules == ("lm_head",)
    hash(cfg)


def test_floats_are_normalized():
    cfg = HQQConfig(beta=10, lp_norm=1)
    assert isinstance(cfg.beta, float) and isinstance(cfg.lp_norm, float)
    assert cfg == HQQConfig(beta=10.0, lp_norm=1.0)


def test_str_enum_members_are_stored_as_plain_str():
    class Fmt(str, enum.Enum):
        E5M2 = "e5m2"

    class Method(str, enum.Enum):  # like transformers' QuantizationMethod
        FP8 = "fp8"

    cfg = FP8Config(fmt=Fmt.E5M2)
    assert type(cfg.fmt) is str and cfg == FP8Config(fmt="e5m2")
    assert hash(cfg) == hash(FP8Config(fmt="e5m2"))
    assert load_config({"quant_method": Method.FP8, "fmt": Fmt.E5M2}) == cfg
    assert FP8Config.from_dict({"quant_method": Method.FP8, "fmt": "e5m2"}) == cfg


def test_replace_validates_and_returns_new_object():
    base = RTNConfig()
    with pytest.raises(ValueError, match="bits"):
        base.replace(bits=1)
    new = base.replace(bits=3)
    assert new == RTNConfig(bits=3) and base == RTNConfig()
    with pytest.raises(ValueError, match="load_in_8bit"):
        BnbConfig().replace(load_in_8bit=True)


def test_load_config_errors():
    with pytest.raises(ValueError, match="exl2") as info:
        load_config({"quant_method": "exl2"})
    for method in EXPECTED_METHODS:
        assert method in str(info.value)
    with pytest.raises(ValueError, match="quant_method"):
        load_config({"bits": 4})
    with pytest.raises(TypeError):
        load_config("[1, 2]")
    with pytest.raises(TypeError):
        load_config(42)


def test_gptq_dict_without_sink_weight_means_the_papers_hessian():
    """A GPTQ config dict from transformers/AutoGPTQ, or saved by lowbit before sink_weight
    existed, lacks the key: it describes the paper's Hessian (1.0), not today's default."""
    assert GPTQConfig().sink_weight == 16.0
    assert GPTQConfig.from_dict({"bits": 4, "group_size": 128}).sink_weight == 1.0
    assert GPTQConfig.from_dict(GPTQConfig().to_dict()) == GPTQConfig()

"""bitsandbytes (calibration-free): NF4/FP4 blockwise 4-bit or LLM.int8() for a BnbConfig."""

from __future__ import annotations

from typing import Any

import numpy.typing as npt

from .. import bnb
from ..config import BnbConfig
from ..quantize import register_method
from ..tensor import QuantizedTensor


@register_method(BnbConfig)
def quantize_bnb(W: npt.ArrayLike, config: BnbConfig, **_stats: Any) -> QuantizedTensor:
    if config.load_in_8bit:
        if config.llm_int8_has_fp16_weight:
            raise NotImplementedError("BnbConfig.llm_int8_has_fp16_weight=True (float16 weights re-quantized every "
                                      "forward) is not implemented: lowbit stores int8 weights; use False")
        return bnb.quantize_int8(W, threshold=config.llm_int8_threshold, config=config)
    return bnb.quantize_4bit(W, config.bnb_4bit_quant_type, config.bnb_4bit_blocksize,
                             config.bnb_4bit_use_double_quant, config=config)

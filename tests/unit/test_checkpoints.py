"""check_fits: a checkpoint's anchor banks are data, not another model's weights; real mismatches are
refused."""

from __future__ import annotations

import pytest
import torch
from tiny_lzn import tiny_model


def _ckpt(model) -> dict:
    return {"state_dict": {k: v.clone() for k, v in model.state_dict().items()}}


def test_banks_on_either_side_fit_and_other_weights_do_not() -> None:
    from lzn_lightning.checkpoints import check_fits

    fresh = tiny_model()  # as `lzn fit|test|validate` builds it from the recipe: no bank yet
    trained = tiny_model()
    trained.set_anchor_bank(torch.rand(5, 1, 8, 8) * 2 - 1)  # as the AnchorBank callback leaves it
    assert "anchor_bank_image" in trained.state_dict()
    check_fits(fresh, _ckpt(trained), "last.ckpt")  # bank in the checkpoint only
    check_fits(trained, _ckpt(fresh), "last.ckpt")  # bank in the model only

    foreign = _ckpt(trained)
    foreign["state_dict"]["modalities.label.extra"] = torch.zeros(3)
    with pytest.raises(ValueError, match=r"1 unexpected \(e\.g\. modalities\.label\.extra\)") as info:
        check_fits(fresh, foreign, "last.ckpt")
    assert "\n" not in str(info.value)
    reshaped = _ckpt(trained)
    key = next(k for k in reshaped["state_dict"] if k.startswith("modalities.image") and k.endswith("weight"))
    reshaped["state_dict"][key] = torch.zeros(7)
    with pytest.raises(ValueError, match="with another shape"):
        check_fits(fresh, reshaped, "last.ckpt")

"""`train.clip_in_step`: gradient clipping folded into the fused AdamW step updates the weights
exactly as `clip_grad_norm_` followed by the step does, whether or not the norm is clipped."""

from __future__ import annotations

import pytest
import torch


@pytest.mark.parametrize("grad_size", [1e-3, 10.0])  # under and over max_norm 1.0
def test_folded_clipping_matches_clip_grad_norm(grad_size):
    from bert_train.train import clip_in_step

    results = []
    for folded in (False, True):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Linear(16, 2))
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.01, fused=True)
        for step in range(3):
            torch.manual_seed(100 + step)
            for p in model.parameters():
                p.grad = torch.randn_like(p) * grad_size
            if folded:
                norm = torch.nn.utils.get_total_norm([p.grad for p in model.parameters()])
                clip_in_step(optimizer, 1.0)
                assert float(optimizer.grad_scale) == pytest.approx(max(1.0, float(norm) + 1e-6))
            else:
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
        results.append([p.detach().clone() for p in model.parameters()])
    for dense, folded_param in zip(*results, strict=True):
        assert torch.allclose(dense, folded_param, rtol=1e-5, atol=1e-7)

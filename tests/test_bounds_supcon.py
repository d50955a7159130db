import pytest
import torch

import bounds


def reference_supcon(features: torch.Tensor, labels: torch.Tensor, tau: float) -> torch.Tensor:
    """Khosla et al.'s L_out written with explicit loops."""
    n = features.shape[0]
    sim = features @ features.T / tau
    total, count = 0.0, 0
    for i in range(n):
        others = [a for a in range(n) if a != i]
        denom = torch.logsumexp(sim[i, others], 0)
        pos = [p for p in others if labels[p] == labels[i]]
        if pos:
            total += -sum(sim[i, p] - denom for p in pos) / len(pos)
            count += 1
    return total / count


def test_supcon_matches_reference_on_multiview_features():
    gen = torch.Generator().manual_seed(0)
    f = torch.nn.functional.normalize(torch.randn(10, 4, generator=gen), dim=1)
    labels = torch.tensor([0, 1, 2, 0, 1, 0, 0, 1, 2, 3])
    scores = f @ f.T / 0.1
    value = bounds.supcon_loss(scores, labels, self_index=torch.arange(10))
    torch.testing.assert_close(value, reference_supcon(f, labels, 0.1))


def test_supcon_cross_modal_and_errors():
    scores = torch.tensor([[5.0, 0.0], [0.0, 5.0]])
    labels = torch.tensor([0, 1])
    # one positive per row at its diagonal: -log softmax(5, 0)
    expected = -torch.log_softmax(torch.tensor([5.0, 0.0]), 0)[0]
    torch.testing.assert_close(bounds.supcon_loss(scores, labels), expected)
    with pytest.raises(ValueError, match="no anchor has a positive"):
        bounds.supcon_loss(torch.randn(3, 3), torch.arange(3), self_index=torch.arange(3))
    with pytest.raises(ValueError, match=r"labels must be a \[3\] vector"):
        bounds.supcon_loss(torch.randn(3, 3), torch.arange(4))

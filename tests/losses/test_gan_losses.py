from __future__ import annotations

import pytest
import torch

from monai_anomaly.losses.gan import focus_loss, gradient_penalty, wgan_critic_loss, wgan_generator_loss


def test_gradient_penalty_of_a_linear_critic_is_exact():
    """A linear critic has gradient w everywhere: the penalty is weight * (||w|| - 1)^2."""
    lin = torch.nn.Linear(16, 1, bias=False)
    with torch.no_grad():
        lin.weight.fill_(0.5)  # ||w|| = 0.5 * 4 = 2
    real, fake = torch.rand(6, 1, 4, 4), torch.rand(6, 1, 4, 4)
    gp = gradient_penalty(lambda x: lin(x.flatten(1)), real, fake, weight=10.0)
    assert float(gp) == pytest.approx(10.0)


def test_gradient_penalty_is_differentiable_in_the_critic():
    lin = torch.nn.Linear(4, 1)
    gp = gradient_penalty(lin, torch.rand(3, 4), torch.rand(3, 4))
    gp.backward()
    assert lin.weight.grad is not None and float(lin.weight.grad.abs().sum()) > 0


def test_gradient_penalty_needs_matching_shapes():
    with pytest.raises(ValueError, match="same shape"):
        gradient_penalty(torch.nn.Identity(), torch.rand(2, 3), torch.rand(3, 3))


def test_wgan_losses_and_focus_loss():
    real, fake = torch.tensor([2.0, 4.0]), torch.tensor([1.0, -1.0])
    assert float(wgan_critic_loss(real, fake)) == pytest.approx(0.0 - 3.0)
    assert float(wgan_generator_loss(fake)) == pytest.approx(0.0)
    assert float(focus_loss(torch.tensor([0.0, 1.0]))) == 0.0
    assert float(focus_loss(torch.full((4,), 0.5))) == pytest.approx(0.25)

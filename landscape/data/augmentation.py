"""Standard CIFAR training augmentation, drawn from an explicit generator (a data seed fixes it)."""

from __future__ import annotations

import torch


def augment(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop after zero padding and random horizontal flip, per example.

    The augmentation of He et al., "Deep Residual Learning for Image Recognition", CVPR 2016 (their
    CIFAR-10 experiments): pad by `pad` pixels on each side, crop back to the original size at a
    random offset, and mirror half of the images.

    Args:
        x: images (N, C, H, W).
        generator: the CPU generator every random draw is taken from.
        pad: the zero padding on each side, the largest shift.

    Returns:
        The augmented images, shaped like `x`, on `x`'s device.

    Examples:
        >>> import torch
        >>> x = torch.arange(16.0).reshape(1, 1, 4, 4)
        >>> augment(x, torch.Generator().manual_seed(0)).shape
        torch.Size([1, 1, 4, 4])
        >>> y = augment(x, torch.Generator().manual_seed(0), pad=0)  # no room to shift
        >>> torch.equal(y, x) or torch.equal(y, x.flip(-1))
        True
    """
    n, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
    flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
    rows = dy[:, None] + torch.arange(h, device=x.device)[None]
    cols = torch.arange(w, device=x.device)[None].expand(n, w)
    cols = torch.where(flip[:, None], cols.flip(1), cols) + dx[:, None]
    idx_n = torch.arange(n, device=x.device)[:, None, None, None]
    idx_c = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[idx_n, idx_c, rows[:, None, :, None], cols[:, None, None, :]]

"""CycleGAN networks and buffers (Zhu et al. 2017) for anomaly detection, built from MONAI's layer factories.

- :class:`ResNetGenerator`: reflection-padded 7x7 stem, ``n_down`` stride-2 convolutions, ``n_res_blocks`` residual
  blocks, resize-convolution upsampling (no transposed-convolution checkerboard), a ``tanh`` output. Reflection
  padding works for one channel (grey MRI), where the public PyTorch-GAN generator fails; 2D or 3D.
- the discriminator is MONAI's :class:`~monai.networks.nets.PatchDiscriminator` (:func:`patch_discriminator`), with
  instance normalisation as in the paper.
- :class:`ImageReplayBuffer`: the 50-image history of generated images the discriminators also see; its content is
  part of the checkpoint (``state_dict``), so a resumed run continues with the same history.
"""

from __future__ import annotations

import torch
from monai.networks.layers.factories import Act, Conv, Norm
from monai.networks.nets import PatchDiscriminator
from torch import nn

__all__ = ["ResNetGenerator", "patch_discriminator", "ImageReplayBuffer"]


def _reflect(dims: int, pad: int) -> nn.Module:
    """Reflection padding (MONAI's ``Pad`` factory has replication and constant padding only)."""
    return {1: nn.ReflectionPad1d, 2: nn.ReflectionPad2d, 3: nn.ReflectionPad3d}[dims](pad)


def _conv_block(dims: int, cin: int, cout: int, kernel: int, stride: int = 1, act: bool = True) -> list[nn.Module]:
    pad = kernel // 2
    layers: list[nn.Module] = [
        _reflect(dims, pad),
        Conv[Conv.CONV, dims](cin, cout, kernel_size=kernel, stride=stride),
        Norm[Norm.INSTANCE, dims](cout, affine=True),
    ]
    if act:
        layers.append(Act[Act.RELU](inplace=True))
    return layers


class _ResBlock(nn.Module):
    def __init__(self, dims: int, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*_conv_block(dims, ch, ch, 3), *_conv_block(dims, ch, ch, 3, act=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResNetGenerator(nn.Module):
    """The CycleGAN generator.

    Args:
        spatial_dims: 2 or 3.
        in_channels, out_channels: image channels (1 for grey images).
        features: width of the stem; doubled at each downsampling.
        n_down: stride-2 downsamplings (the input size must be divisible by ``2 ** n_down``).
        n_res_blocks: residual blocks at the bottleneck (6 for 128 px, 9 for 256 px in the paper).

    Example:
        >>> g = ResNetGenerator(2, features=8, n_res_blocks=2)
        >>> g(torch.zeros(1, 1, 32, 32)).shape
        torch.Size([1, 1, 32, 32])
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 1,
        features: int = 64,
        n_down: int = 2,
        n_res_blocks: int = 9,
    ) -> None:
        super().__init__()
        d = spatial_dims
        layers: list[nn.Module] = _conv_block(d, in_channels, features, 7)
        ch = features
        for _ in range(n_down):
            layers += _conv_block(d, ch, ch * 2, 3, stride=2)
            ch *= 2
        layers += [_ResBlock(d, ch) for _ in range(n_res_blocks)]
        mode = "bilinear" if d == 2 else "trilinear"
        for _ in range(n_down):
            layers += [nn.Upsample(scale_factor=2, mode=mode, align_corners=False), *_conv_block(d, ch, ch // 2, 3)]
            ch //= 2
        layers += [_reflect(d, 3), Conv[Conv.CONV, d](ch, out_channels, kernel_size=7), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.n_down = n_down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(s % (2**self.n_down) for s in x.shape[2:]):
            raise ValueError(f"spatial size {tuple(x.shape[2:])} must be divisible by {2**self.n_down}")
        return self.net(x)


def patch_discriminator(
    spatial_dims: int = 2, in_channels: int = 1, channels: int = 64, num_layers_d: int = 3
) -> PatchDiscriminator:
    """A 70x70-style PatchGAN discriminator (MONAI's), with instance normalisation; its last output is the patch map.

    Example:
        >>> d = patch_discriminator(channels=8, num_layers_d=2)
        >>> d(torch.zeros(1, 1, 32, 32))[-1].shape[:2]
        torch.Size([1, 1])
    """
    return PatchDiscriminator(
        spatial_dims=spatial_dims,
        channels=channels,
        in_channels=in_channels,
        out_channels=1,
        num_layers_d=num_layers_d,
        norm="INSTANCE",
        bias=True,
    )


class ImageReplayBuffer:
    """The history of generated images shown to a discriminator (Shrivastava et al. 2017; CycleGAN uses 50).

    Until it is full, every new image is stored and returned; then each new image is, with probability 0.5, swapped
    for a random stored one (which is returned) or returned as it is.

    Args:
        size: how many images to keep.
        seed: seed of its random choices.

    Example:
        >>> buf = ImageReplayBuffer(size=2, seed=0)
        >>> buf.push_and_pop(torch.zeros(3, 1, 4, 4)).shape
        torch.Size([3, 1, 4, 4])
        >>> len(buf)
        2
    """

    def __init__(self, size: int = 50, seed: int | None = None) -> None:
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        self.size = int(size)
        self.images: list[torch.Tensor] = []
        self._gen = torch.Generator()
        if seed is not None:
            self._gen.manual_seed(seed)

    def __len__(self) -> int:
        return len(self.images)

    def push_and_pop(self, batch: torch.Tensor) -> torch.Tensor:
        """Store the new images and return a batch of the same size drawn as described above."""
        if self.size == 0:
            return batch
        out = []
        # plain tensors (not MONAI MetaTensors with their metadata), so the checkpoint loads with weights_only=True
        for img in batch.detach().as_subclass(torch.Tensor):
            img = img.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(img.cpu().clone())
                out.append(img)
            elif float(torch.rand((), generator=self._gen)) < 0.5:
                i = int(torch.randint(0, self.size, (), generator=self._gen))
                old = self.images[i].to(img.device)
                self.images[i] = img.cpu().clone()
                out.append(old)
            else:
                out.append(img)
        return torch.cat(out)

    def state_dict(self) -> dict:
        """The stored images (a tensor) and the random state: plain data, safe to load with ``weights_only``."""
        stack = torch.cat(self.images) if self.images else torch.zeros(0)
        return {"images": stack, "size": self.size, "rng": self._gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.size = int(state["size"])
        imgs = state["images"]
        self.images = [imgs[i : i + 1].clone() for i in range(imgs.shape[0])] if imgs.numel() else []
        self._gen.set_state(state["rng"])

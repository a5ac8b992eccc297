"""Copies between the host and a GPU that never make the host wait for the GPU's queue
(issue 31): a stage that keeps the GPU busy queues the next batch's work while the device
still runs the last one, and any read-back on the way (`.item()`, `.tolist()`, a plain
`.to(device)` of pageable memory, which PyTorch follows with a stream synchronize) would
idle the device until the host has queued more.

- `to_device`: host arrays go up through page-locked memory, asynchronously.
- `HostCopy`: device results come down into page-locked memory behind the work queued so
  far; `wait()` waits for that work only, not for what was queued after the copy.

On the CPU (and the `meta` device of the tests) both are plain copies.
"""

from __future__ import annotations

import numpy as np
import torch


def to_device(array: np.ndarray | torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """`array` on `device`; from the host to a GPU through pinned memory, without waiting."""
    if isinstance(array, np.ndarray) and not array.flags.writeable:
        array = array.copy()  # (decoded files are read-only; torch wants to own writes)
    tensor = torch.as_tensor(array)
    if torch.device(device).type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


class HostCopy:
    """Tensors of one device, copied to the host behind the work queued so far."""

    def __init__(self, tensors: list[torch.Tensor]):
        self._tensors, self._event = tensors, None
        if any(t.is_cuda for t in tensors):
            self._tensors = [torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
                             .copy_(t, non_blocking=True) for t in tensors]
            self._event = torch.cuda.Event()
            self._event.record()

    def wait(self) -> list[torch.Tensor]:
        """The tensors on the host, once the work queued before the copy is done (on other
        devices: copied now)."""
        if self._event is not None:
            self._event.synchronize()
        return [t.cpu() for t in self._tensors]

"""Training state on disk: resumable checkpoints.

Layout of ``out_dir/checkpoint`` (replaced atomically as a whole, so a crash mid-write leaves the
previous checkpoint intact):
  student.safetensors   student weights (tied tensors stored once, via safetensors.torch.save_model)
  trainer.pt            optimizer, scheduler, completed steps, RNG states, history, config
                        (plain containers of tensors and numbers: loads with ``weights_only=True``)
"""

from __future__ import annotations

from pathlib import Path

import torch

from analysis.core.io import atomic_dir

CHECKPOINT = "checkpoint"
STUDENT = "student.safetensors"
TRAINER = "trainer.pt"


def rng_state() -> dict:
    """Every RNG a training step could draw from (dropout, sampling); restored on resume."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(out_dir: Path, student, optimizer, scheduler, trainer: dict) -> Path:
    """Write ``out_dir/checkpoint`` atomically; ``trainer`` holds step, history and config."""
    from safetensors.torch import save_model

    target = Path(out_dir) / CHECKPOINT
    with atomic_dir(target) as tmp:
        save_model(student, str(tmp / STUDENT))
        torch.save(trainer | {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                              "rng": rng_state()}, tmp / TRAINER)
    return target


def load_checkpoint(out_dir: Path, student, optimizer, scheduler, device) -> dict | None:
    """Restore student, optimizer, scheduler and RNG from ``out_dir/checkpoint``; None if there is none.

    Returns the trainer dict (step, history, config).
    """
    from safetensors.torch import load_model

    path = Path(out_dir) / CHECKPOINT
    if not (path / TRAINER).exists():
        return None
    load_model(student, str(path / STUDENT), device=str(device))
    trainer = torch.load(path / TRAINER, map_location="cpu", weights_only=True)
    optimizer.load_state_dict(trainer.pop("optimizer"))  # moves state to the params' device
    scheduler.load_state_dict(trainer.pop("scheduler"))
    set_rng_state(trainer.pop("rng"))
    return trainer

"""Training state on disk: resumable checkpoints, never a pickle.

Layout of ``out_dir/checkpoint`` (replaced as a whole under the output contract, so a crash
mid-write leaves the previous checkpoint intact and files of the user's in it are kept):
  student.safetensors   student weights (tied tensors stored once, via safetensors.torch.save_model)
  trainer.json          optimizer, scheduler, completed steps, RNG states, history, config: the
  trainer.safetensors   structure as JSON and its tensors as safetensors (``analysis.core.tensorstate``)

Nothing here calls ``torch.load``: a checkpoint is data, and a planted file cannot run code. An
older ``trainer.pt`` (pickle) is refused by name rather than loaded.
"""

from __future__ import annotations

from pathlib import Path

import torch

from analysis.core.errors import MinitronError, one_line
from analysis.core.io import output_dir
from analysis.core.tensorstate import load_state, save_state

CHECKPOINT = "checkpoint"
STUDENT = "student.safetensors"
TRAINER = "trainer.json"
TRAINER_TENSORS = "trainer.safetensors"
LEGACY_PICKLE = "trainer.pt"


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


def has_checkpoint(out_dir: Path) -> bool:
    """Whether ``out_dir`` holds a training checkpoint (of either format)."""
    path = Path(out_dir) / CHECKPOINT
    return (path / TRAINER).exists() or (path / LEGACY_PICKLE).exists()


def save_checkpoint(out_dir: Path, student, optimizer, scheduler, trainer: dict) -> Path:
    """Write ``out_dir/checkpoint`` atomically; ``trainer`` holds step, history and config."""
    from safetensors.torch import save_model

    target = Path(out_dir) / CHECKPOINT
    with output_dir(target, "distill") as tmp:
        save_model(student, str(tmp / STUDENT))
        save_state(trainer | {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                              "rng": rng_state()}, tmp / TRAINER, tmp / TRAINER_TENSORS)
    return target


def load_checkpoint(out_dir: Path, student, optimizer, scheduler, device) -> dict | None:
    """Restore student, optimizer, scheduler and RNG from ``out_dir/checkpoint``; None if there is none.

    Returns the trainer dict (step, history, config). A damaged checkpoint is a one-line error.
    """
    from safetensors.torch import load_model

    path = Path(out_dir) / CHECKPOINT
    if not (path / TRAINER).exists():
        if (path / LEGACY_PICKLE).exists():
            raise MinitronError(f"{path / LEGACY_PICKLE}: a pickled checkpoint is never loaded (a pickle can run "
                                "code); rerun without --resume to start over")
        return None
    trainer = load_state(path / TRAINER, path / TRAINER_TENSORS, "training checkpoint")
    try:
        load_model(student, str(path / STUDENT), device=str(device))
        optimizer.load_state_dict(trainer.pop("optimizer"))  # moves state to the params' device
        scheduler.load_state_dict(trainer.pop("scheduler"))
        set_rng_state(trainer.pop("rng"))
    except Exception as exc:  # noqa: BLE001 - safetensors, torch and a damaged dict all raise differently
        raise MinitronError(f"{path}: damaged training checkpoint ({type(exc).__name__}: {one_line(exc)}); rerun "
                            "without --resume to start over") from None
    return trainer

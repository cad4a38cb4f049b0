"""Analysis pipeline (placeholder until the engine lands): resolves and loads the model first."""

from __future__ import annotations

from dataclasses import dataclass, field

from analysis.data import DataConfig
from analysis.loading import LoadConfig, load_model


@dataclass
class AnalysisConfig:
    load: LoadConfig = field(default_factory=LoadConfig)
    data: DataConfig = field(default_factory=DataConfig)
    batch_size: int = 8
    block_sizes: tuple[int, ...] = (1, 2, 4, 8)
    pre_activation: bool = False
    compile: bool | None = None


def run_analysis(cfg: AnalysisConfig, out=None, force=False, resume=False, console=None):
    load_model(cfg.load)
    raise NotImplementedError("analysis engine not built yet")

"""Render card data through jinja2 templates (always sandboxed, time- and size-limited: ``cards.sandbox``)
and save cards atomically.

``render()`` returns text; ``save()`` writes a card directory; neither does the other's job.
"""

from __future__ import annotations

import base64
import re
import shutil
from pathlib import Path

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from analysis.core.errors import MinitronError
from analysis.core.io import output_files
from analysis.models.registry import MODELS
from cards import facts as F
from cards.data import CardData
from cards.sandbox import Sandbox, TemplateLimitError, render_limited

TEMPLATES = Path(__file__).parent / "templates"
MAIN = "modelcard.md.j2"
SECTIONS = ("overview", "license", "architecture", "usage", "training", "evaluation", "measured", "inference",
            "limitations", "ethics", "analysis")
HF_LICENSES = {"apache-2.0", "mit", "cc-by-4.0", "llama3", "llama3.1", "gemma", "openrail"}
LICENSE_TITLES = {"nvidia-open-model-license": "NVIDIA Open Model License Agreement (June 2024)"}


def environment(extra_dir: Path | None = None) -> SandboxedEnvironment:
    """A sandboxed jinja2 environment over our templates (and a user's template directory first)."""
    dirs = ([str(extra_dir)] if extra_dir else []) + [str(TEMPLATES)]
    return Sandbox(loader=jinja2.FileSystemLoader(dirs), keep_trailing_newline=True,
                                trim_blocks=True, lstrip_blocks=True, autoescape=False)


def eval_results(card: CardData) -> list:
    """huggingface_hub EvalResult objects for the model-index, one per published number."""
    from huggingface_hub import EvalResult

    return [EvalResult(task_type="text-generation", task_name="Text Generation", dataset_type=e.dataset_id or e.task,
                       dataset_name=e.task, dataset_config=e.dataset_config or None,
                       dataset_args={"num_few_shot": e.shots}, metric_type=e.metric,
                       metric_value=e.value, metric_name=f"{e.task} {e.metric} ({e.shots}-shot)",
                       source_name=e.source, source_url=F.source_url(e.source))
            for e in card.evals] + measured_results(card)


def measured_results(card: CardData) -> list:
    """model-index entries for Minitron Lab's own measurements, their source naming who measured, how and when."""
    from huggingface_hub import EvalResult

    return [EvalResult(task_type="text-generation", task_name="Text Generation", dataset_type=m.lm_eval_task,
                       dataset_name=m.task, dataset_args={"num_few_shot": m.shots}, metric_type=m.metric,
                       metric_value=round(m.value, 4), metric_name=f"{m.task} {m.metric} ({m.shots}-shot, measured)",
                       source_name=f"measured by Minitron Lab with {m.harness} on {m.created[:10]} ({m.settings}, "
                                   f"{m.n} documents)",
                       source_url=F.HARNESS_URL)
            for m in card.measured]


def front_matter(card: CardData) -> str:
    """YAML front matter (without the --- fences) that huggingface_hub's ModelCard reads."""
    from huggingface_hub import ModelCardData

    hf_licence = card.license in HF_LICENSES
    data = ModelCardData(
        license=card.license if hf_licence else "other",
        license_name=None if hf_licence or not card.license else card.license,
        license_link=None if hf_licence else (card.license_link or None),
        library_name="transformers", pipeline_tag="text-generation", tags=card.tags or None,
        base_model=card.base_model, model_name=card.display_name if card.evals or card.measured else None,
        eval_results=eval_results(card) or None,
    )
    text = data.to_yaml() + "\n"
    if card.teacher and not card.base_model:  # the comment survives in the file; YAML parsers skip it
        text = (f"# base_model is omitted: the teacher, {card.teacher.display_name}, is not published on the "
                "Hugging Face Hub.\n") + text
    elif card.role == "pruned" and not card.base_model and card.teacher_name:
        text = f"# base_model is omitted: the teacher '{card.teacher_name}' has no Hugging Face id.\n" + text
    return text


def context(card: CardData) -> dict:
    """Everything templates see: the card and a few derived values."""
    students = [m.display_name for m in MODELS if m.teacher == card.name]
    return {
        "card": card, "sections": SECTIONS, "front_matter": front_matter(card), "evals": card.evals,
        "students": students,
        "license_title": LICENSE_TITLES.get(card.license, card.license or "license"),
        "paper_url": F.PAPER_URL, "harness_url": F.HARNESS_URL, "security_url": F.SECURITY_URL,
        "analyze_ref": str(card.source_dir) if card.source_dir else card.name,
    }


def load_template(template: str | Path | None = None) -> jinja2.Template:
    """Our main template or a user's template file, parsed (syntax errors surface here, before any work)."""
    path = Path(template) if template else None
    if path is not None and not path.is_file():
        raise MinitronError(f"template {path}: no such file")
    env = environment(path.parent if path else None)
    name = path.name if path else MAIN
    try:
        return env.get_template(name)
    except jinja2.TemplateSyntaxError as exc:
        raise MinitronError(f"template {exc.filename or name}:{exc.lineno}: syntax error: {exc.message}") from None
    except UnicodeDecodeError:
        raise MinitronError(f"template {path or name}: not UTF-8 text") from None
    except jinja2.TemplateError as exc:
        raise MinitronError(f"template {name}: {type(exc).__name__}: {_one_line(exc)}") from None


def render(card: CardData, template: str | Path | None = None) -> str:
    """The card as Markdown text; ``template`` is a user template file (rendered in the limited sandbox)."""
    tpl = load_template(template)
    name = tpl.name or MAIN
    try:
        return tidy(render_limited(tpl, context(card)))
    except jinja2.TemplateSyntaxError as exc:  # an included template
        raise MinitronError(f"template {exc.filename or name}:{exc.lineno}: syntax error: {exc.message}") from None
    except TemplateLimitError as exc:
        raise MinitronError(f"template {name}: stopped by the sandbox's limits: {_one_line(exc)}") from None
    except SecurityError as exc:
        raise MinitronError(f"template {name}: refused by the sandbox: {_one_line(exc)}") from None
    except jinja2.TemplateError as exc:
        raise MinitronError(f"template {name}: {type(exc).__name__}: {_one_line(exc)}") from None
    except RecursionError:
        raise MinitronError(f"template {name}: stopped by the sandbox's limits: recursion too deep") from None
    except MemoryError:
        raise MinitronError(f"template {name}: stopped: it asked for more memory than the machine has") from None
    except (ArithmeticError, TypeError, ValueError, LookupError, AttributeError) as exc:
        raise MinitronError(f"template {name}: {type(exc).__name__}: {_one_line(exc)}") from None


def tidy(text: str) -> str:
    """At most one blank line in a row, one newline at the end (templates stay readable, output tidy)."""
    return re.sub(r"\n{3,}", "\n\n", text).rstrip("\n") + "\n"


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def to_html(markdown: str, card_dir: Path, title: str) -> str:
    """A self-contained HTML page: front matter dropped, figures inlined as base64 data URIs."""
    from markdown_it import MarkdownIt

    body = re.sub(r"\A---\n.*?\n---\n", "", markdown, flags=re.DOTALL)
    html = MarkdownIt("commonmark").enable("table").render(body)

    def inline(match: re.Match) -> str:
        src = card_dir / match.group(1)
        if not src.is_file():
            return match.group(0)
        mime = "image/svg+xml" if src.suffix == ".svg" else "image/png"
        return f'src="data:{mime};base64,{base64.b64encode(src.read_bytes()).decode()}"'

    html = re.sub(r'src="([^":]+)"', inline, html)
    style = ("body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;line-height:1.5}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25rem .6rem}"
             "img{max-width:100%}pre{background:#f6f8fa;padding:1rem;overflow-x:auto}")
    return (f"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title><style>{style}</style>"
            f"</head><body>\n{html}</body></html>\n")


def save(text: str, out_dir: str | Path, files: dict[str, Path] | None = None, name: str = "README.md") -> Path:
    """Write ``out_dir/name`` and ``files`` (relative name -> staged file) atomically, recorded in the marker.

    Everything is staged next to ``out_dir`` first, then moves into place one rename per file, the
    card last; other files in ``out_dir`` (a model's weights) stay. Check the target first
    (``cards.publish.write_cards`` does).
    """
    with output_files(out_dir, "card", last=name) as stage:
        (stage / name).write_text(text, encoding="utf-8")
        for rel, src in (files or {}).items():
            (stage / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, stage / rel)
    return Path(out_dir) / name

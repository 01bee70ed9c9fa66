"""Report HTML: notebook cells and outputs (figures, tables) and their export to one
self-contained HTML page without code.

The template is nbconvert's ``lab`` template with every script block (require.js, MathJax,
Mermaid, widgets) emptied, so the page fetches nothing (:data:`REPORT_TEMPLATE`); figures are
embedded as ``data:`` URIs. Every PNG output becomes an ``<img>`` whose ``alt`` says what it
shows: the output's ``metadata["image/png"]["alt"]``, else its ``text/plain`` (the description
:func:`helpers.plots.describe` gives); a bare ``<Figure ...>`` repr is no description, and such
an image is left without ``alt`` (nbconvert then warns).
"""

from __future__ import annotations

import base64
import os
from typing import Any, Optional, Sequence, Tuple

import pandas as pd

from helpers import plots, storage

#: nbconvert's ``lab`` page with no script at all: nothing is fetched from a CDN, so the report
#: reads offline; plus a little CSS (after the template's own) for larger text and a centred page.
REPORT_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block html_head_css -%}
<style type="text/css">
  :root { --jp-content-font-size1: 17px; --jp-ui-font-size1: 15px; --jp-code-font-size: 15px; }
  body.jp-Notebook { max-width: 1150px; margin: 0 auto; padding: 1em 2em 4em 2em; }
  .jp-RenderedHTMLCommon { line-height: 1.5; }
  .jp-OutputArea-output img { max-width: 100%; height: auto; }
  .jp-OutputArea-output.jp-RenderedHTMLCommon table { margin-left: 0; margin-right: auto; }
  table.text-left td, table.text-left th { text-align: left !important; }
  details > summary { cursor: pointer; font-weight: bold; margin: 0.5em 0; }
</style>
{%- endblock html_head_css -%}
{%- block data_png scoped -%}
{%- set alt = output | get_metadata('alt', 'image/png') or output.data.get('text/plain', '') -%}
{%- if alt is not string -%}{%- set alt = alt | join('') -%}{%- endif -%}
<div class="jp-RenderedImage jp-OutputArea-output {{ extra_class }}">
{%- if 'image/png' in output.metadata.get('filenames', {}) %}
<img src="{{ output.metadata.filenames['image/png'] | posix_path | escape_html }}"
{%- else %}
<img src="data:image/png;base64,{{ output.data['image/png'] | escape_html }}"
{%- endif %}
{%- if alt and not alt.startswith('<') %}
alt="{{ alt | trim | escape_html }}"
{%- endif %}
>
</div>
{%- endblock data_png -%}
"""
_TEMPLATE_NAME = "fruits_report.html.j2"


def html_exporter() -> Any:
    """nbconvert's ``HTMLExporter`` for reports: no code, no prompts, no scripts, images inline."""
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    return HTMLExporter(
        template_name="lab",
        extra_loaders=[DictLoader({_TEMPLATE_NAME: REPORT_TEMPLATE})],
        template_file=_TEMPLATE_NAME,
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        embed_images=True,
        theme="light",
    )


def export_html(notebook: Any, title: str = "Fruits! report") -> str:
    """A notebook (``nbformat`` node) as one self-contained HTML page without its code."""
    body, _ = html_exporter().from_notebook_node(notebook, resources={"metadata": {"name": title}})
    return body


def export_notebook(path: str, s3_endpoint: Optional[str] = None) -> str:
    """An executed notebook file (local or ``s3://``) as HTML without its code cells.

    Standard-error streams (Spark's and TensorFlow's warnings) are left out; the rest of every
    cell's output (the stage log lines, tables, figures) is kept.
    """
    import nbformat

    notebook = nbformat.reads(
        storage.read_bytes(None, path, s3_endpoint or "").decode("utf-8"), as_version=4
    )
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = [
                output
                for output in cell.outputs
                if not (output.output_type == "stream" and output.name == "stderr")
            ]
    title = os.path.splitext(os.path.basename(path))[0]
    return export_html(notebook, title=title)


def markdown_cell(text: str) -> Any:
    import nbformat

    return nbformat.v4.new_markdown_cell(text)


def output_cell(*outputs: Any) -> Any:
    """A code cell with no code, carrying ``outputs`` (only outputs show in the report)."""
    import nbformat

    cell = nbformat.v4.new_code_cell(source="")
    cell.outputs = list(outputs)
    return cell


def figure_output(figure: Any, description: Optional[str] = None) -> Any:
    """A display output holding ``figure`` (a matplotlib Figure or PNG bytes) as a PNG, with
    ``description`` (default: the figure's own, :func:`helpers.plots.describe`) as its text and
    its ``alt`` metadata, which the exported page's ``<img alt>`` shows."""
    import nbformat

    if isinstance(figure, (bytes, bytearray)):
        png = bytes(figure)
    else:
        png = plots.figure_png(figure)
        description = description or plots.describe(figure)
    description = description or "figure"
    return nbformat.v4.new_output(
        "display_data",
        data={"image/png": base64.b64encode(png).decode("ascii"), "text/plain": description},
        metadata={"image/png": {"alt": description}},
    )


def html_output(markup: str, text: str) -> Any:
    """A display output holding ``markup`` (HTML) and its plain-text equivalent."""
    import nbformat

    return nbformat.v4.new_output("display_data", data={"text/html": markup, "text/plain": text})


def table_output(frame: pd.DataFrame, index: bool = True, text: bool = False) -> Any:
    """A display output holding ``frame`` as an HTML table (and plain text).

    Cells are right-aligned (numbers), or left-aligned with ``text=True`` (names, paths).
    """
    import nbformat

    classes = ["text-left"] if text else None
    return nbformat.v4.new_output(
        "display_data",
        data={
            "text/html": frame.to_html(index=index, border=0, classes=classes),
            "text/plain": frame.to_string(),
        },
    )


def text_table(pairs: Sequence[Tuple[str, Any]], key: str, value: str) -> Any:
    """A two-column, left-aligned table output; ``None`` and ``""`` shown as Python writes them."""
    frame = pd.DataFrame(
        [(k, repr(v) if v is None or v == "" else str(v)) for k, v in pairs], columns=[key, value]
    )
    return table_output(frame, index=False, text=True)
